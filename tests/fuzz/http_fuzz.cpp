// libFuzzer target: arbitrary bytes as what a client sends on one connection, read as the server
// reads them (Beast's parser with the server's body and header limits, requests one after
// another while the connection is kept alive) and answered by the real API router (a small
// Qwen2-style tokenizer and chat template, an API key, CORS for one origin, no engine: a
// generation stops at its prepared job). A crash, a sanitizer report, a hang, an exception out
// of the router, or a reply that does not survive the trip back through Beast (a header field
// that injects another, a status Beast cannot write, a JSON reply that is not JSON) is a finding.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <string_view>

#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/api_routes.h"
#include "server/cors.h"
#include "server/http_wire.h"
#include "server/request_id.h"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;

// Small limits, so that the fuzzer reaches them with short inputs.
constexpr size_t kMaxBody = 4096;
constexpr size_t kMaxHeader = 1024;

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "http_fuzz: %s\n", what.c_str());
  std::abort();
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  if (!in) finding("cannot read " + path.string());
  return s.str();
}

// The server's routes over a tokenizer loaded once (from the hf_tokenizer seed, split as that
// target splits it) and the Qwen2.5 chat template.
struct Api {
  std::unique_ptr<xq::Tokenizer> tok;
  std::unique_ptr<xq::ChatTemplate> tmpl;
  xq::IdSource ids{7};
  xq::ApiContext ctx;
  xq::Router router;
  xq::CorsPolicy cors{{"https://ok.example"}};

  Api() {
    const std::filesystem::path src(XQ_SOURCE_DIR);
    const std::string both = read_text(src / "tests/fuzz/corpus/hf_tokenizer/qwen2.json");
    const size_t cut = both.find("\n----\n");
    char dir[] = "/tmp/http_fuzz.XXXXXX";
    if (mkdtemp(dir) == nullptr) finding("mkdtemp");
    std::ofstream(std::filesystem::path(dir) / "tokenizer.json") << both.substr(0, cut);
    tok = xq::load_hf_tokenizer(dir);
    std::filesystem::remove_all(dir);
    tmpl = std::make_unique<xq::ChatTemplate>(
        read_text(src / "tests/data/chat_templates/qwen2.5-7b-instruct.jinja"));
    ctx.tokenizer = tok.get();
    ctx.limits.served_name = "m";
    ctx.limits.model_path = "/models/m";
    ctx.limits.vocab_size = tok->vocab_size();
    ctx.limits.max_model_len = 256;
    ctx.chat = xq::chat_template_env(tmpl.get(), *tok);
    ctx.api_key = "sk-fuzz";
    ctx.ids = &ids;
    router = xq::make_api_router(ctx);
  }
};

void check_header_text(std::string_view text, const char* what) {
  for (char ch : text)
    if (ch == '\r' || ch == '\n' || ch == '\0') finding(std::string(what) + " holds CR, LF or NUL");
}

// Writes the reply as the session does and reads it back: every field the server set must come
// back as one field with the same value, and a JSON reply must parse.
void check_reply(const xq::HttpReply& reply, const std::string& request_id,
                 const xq::HeaderList& cors, bool keep_alive) {
  if (reply.status < 100 || reply.status > 599) finding("status " + std::to_string(reply.status));
  for (const auto& [name, value] : reply.headers) {
    check_header_text(name, "a header name");
    check_header_text(value, "a header value");
  }
  for (const auto& [name, value] : cors) check_header_text(value, "a CORS header value");
  check_header_text(request_id, "the request id");
  http::response<http::string_body> res(static_cast<http::status>(reply.status), 11);
  xq::set_reply_head(res, reply, request_id, cors, keep_alive);
  res.body() = reply.body;
  res.prepare_payload();
  std::ostringstream wire;
  wire << res;
  http::response_parser<http::string_body> back;
  back.eager(true);
  beast::error_code ec;
  const std::string bytes = wire.str();
  back.put(boost::asio::buffer(bytes), ec);
  if (ec || !back.is_done()) finding("the reply does not parse back: " + ec.message());
  const auto& got = back.get();
  if (got.result_int() != reply.status) finding("the status changed on the wire");
  if (got.body() != reply.body) finding("the body changed on the wire");
  if (got["X-Request-Id"] != request_id) finding("the request id changed on the wire");
  for (const auto& [name, value] : reply.headers)
    if (got[name] != value) finding("header " + name + " changed on the wire");
  if (reply.content_type == "application/json" && !reply.body.empty() &&
      !nlohmann::json::accept(reply.body))
    finding("a JSON reply that is not JSON: " + reply.body.substr(0, 200));
}

// What the session does with one request read whole. Returns whether the connection stays open.
bool answer(const Api& api, http::request<xq::RequestBody>& req) {
  const bool keep_alive = req.keep_alive();
  const auto client_id = req["X-Request-Id"];
  const std::string request_id =
      xq::request_id_for(std::string_view(client_id.data(), client_id.size()));
  const std::string origin(req[http::field::origin]);
  const xq::HeaderList cors = api.cors.reply_headers(origin);
  xq::HttpRequestIn in = xq::request_in(req);
  std::optional<xq::HttpReply> pre = api.cors.preflight(
      in.method, origin, std::string(req[http::field::access_control_request_method]),
      std::string(req[http::field::access_control_request_headers]));
  if (pre) {
    check_reply(*pre, request_id, cors, keep_alive);
    return keep_alive;
  }
  xq::RouteResult r;
  try {
    r = api.router.dispatch(in);
  } catch (const std::exception& e) {
    finding(std::string("the router threw: ") + e.what());
  }
  // A generation would go to the engine now; its job must at least be whole.
  if (r.job && (!r.job->assembler || r.job->assembler->num_choices() < 1))
    finding("a job without choices");
  if (!r.job) check_reply(r.reply, request_id, cors, keep_alive);
  return keep_alive;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Api api;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  // Requests one after another on one connection, as async_read_header + async_read take them
  // from the connection's buffer; the input's end is the client closing.
  for (;;) {
    xq::RequestParser parser;
    xq::limit_parser(parser, kMaxBody, kMaxHeader);
    parser.eager(true);
    beast::error_code ec;
    while (!ec && !parser.is_done()) {
      if (rest.empty()) {
        // Nothing of this request yet: the client closed between requests (end_of_stream).
        if (!parser.got_some()) return 0;
        parser.put_eof(ec);
        if (!ec && !parser.is_done()) ec = http::error::partial_message;
        break;
      }
      const size_t used = parser.put(boost::asio::buffer(rest.data(), rest.size()), ec);
      rest.remove_prefix(used);
      if (ec == http::error::need_more) ec = {};
      // The whole input is in the buffer: no progress means the client stopped sending.
      if (!ec && used == 0 && !parser.is_done()) {
        parser.put_eof(ec);
        if (!ec && !parser.is_done()) ec = http::error::partial_message;
        break;
      }
    }
    if (ec) {
      if (auto reply = xq::read_failure_reply(ec, kMaxBody))
        check_reply(*reply, xq::request_id_for(""), {}, false);
      return 0;
    }
    http::request<xq::RequestBody> req = parser.release();
    if (!answer(api, req) || rest.empty()) return 0;
  }
}
