// The /v1/chat/completions response: chat.completion JSON, chat.completion.chunk SSE frames
// (role delta first, content deltas, finish_reason, usage), chat-shaped logprobs; and the CORS
// policy's headers and preflight answers.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/chat_response.h"
#include "server/chat_schema.h"
#include "server/cors.h"
#include "server_byte_tokenizer.h"

namespace xq {
namespace {

using nlohmann::json;

const testing::ByteTokenizer kTok;
const ModelLimits kLimits{"tiny", "", 258, 64};

PreparedCompletion prepare(const std::string& body) {
  static const ChatTemplate tmpl("{% for m in messages %}{{ m.content }}{% endfor %}");
  return prepare_chat(parse_chat_body(body, kLimits), chat_template_env(&tmpl, kTok), kTok,
                      kLimits);
}

GeneratedToken token(int id, float logprob, std::vector<std::pair<int, float>> top = {}) {
  return GeneratedToken{id, std::string(1, static_cast<char>(id)),
                        TokenLogprob{id, logprob, std::move(top)}};
}

RequestEvent step(std::vector<GeneratedToken> tokens, std::string text, const char* finish = "") {
  RequestEvent ev;
  ev.tokens = std::move(tokens);
  ev.text = std::move(text);
  ev.finished = *finish != '\0';
  ev.finish_reason = finish;
  return ev;
}

std::vector<json> payloads(const std::vector<std::string>& frames) {
  std::vector<json> out;
  for (const std::string& f : frames) {
    EXPECT_EQ(f.rfind("data: ", 0), 0u) << f;
    const std::string body = f.substr(6, f.size() - 8);
    out.push_back(body == "[DONE]" ? json("[DONE]") : json::parse(body));
  }
  return out;
}

TEST(ChatResponse, NonStreamingShapeUsageAndLogprobs) {
  PreparedCompletion p = prepare(
      R"({"messages": [{"role": "user", "content": "hey"}], "max_tokens": 3, "logprobs": true,
          "top_logprobs": 2})");
  ChatAssembler as({"chatcmpl-1", 17, "tiny"}, p, kTok);
  EXPECT_TRUE(as.on_event(0, step({token('o', -0.5f, {{'o', -0.5f}, {'k', -1.5f}})}, "o")).empty());
  as.on_event(0, step({token(0xC3, -0.25f, {{0xC3, -0.25f}, {'x', -2.0f}})}, "", "stop"));
  ASSERT_TRUE(as.done());
  const json j = json::parse(as.final_body());
  EXPECT_EQ(j["id"], "chatcmpl-1");
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"], (json{{"role", "assistant"}, {"content", "o"}}));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"],
            (json{{"prompt_tokens", 3}, {"completion_tokens", 2}, {"total_tokens", 5}}));
  const json& c = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0]["token"], "o");
  EXPECT_FLOAT_EQ(c[0]["logprob"].get<float>(), -0.5f);
  EXPECT_EQ(c[0]["bytes"], json::array({'o'}));
  ASSERT_EQ(c[0]["top_logprobs"].size(), 2u);
  EXPECT_EQ(c[0]["top_logprobs"][1]["token"], "k");
  // A lone byte of a multi-byte character: the text is replaced, the bytes are exact.
  EXPECT_EQ(c[1]["token"], "\xEF\xBF\xBD");
  EXPECT_EQ(c[1]["bytes"], json::array({0xC3}));
}

TEST(ChatResponse, StreamingRoleDeltaThenContentThenFinishThenUsage) {
  PreparedCompletion p = prepare(
      R"({"messages": [{"role": "user", "content": "hey"}], "max_tokens": 3, "n": 2,
          "stream": true, "stream_options": {"include_usage": true}})");
  ChatAssembler as({"chatcmpl-2", 5, "tiny"}, p, kTok);
  std::vector<json> f = payloads(as.on_event(1, step({token('a', -1)}, "a")));
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(f[0]["choices"][0]["index"], 1);
  EXPECT_EQ(f[0]["choices"][0]["delta"], (json{{"role", "assistant"}, {"content", ""}}));
  EXPECT_TRUE(f[0]["usage"].is_null() && f[0].contains("usage"));
  EXPECT_EQ(f[1]["choices"][0]["delta"], (json{{"content", "a"}}));
  EXPECT_TRUE(f[1]["choices"][0]["finish_reason"].is_null());
  // A step that released no text (held back UTF-8) sends nothing.
  EXPECT_TRUE(as.on_event(1, step({token(0xC3, -1)}, "")).empty());
  f = payloads(as.on_event(1, step({}, "", "length")));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0]["choices"][0]["delta"], json::object());
  EXPECT_EQ(f[0]["choices"][0]["finish_reason"], "length");
  f = payloads(as.on_event(0, step({token('b', -1)}, "b", "stop")));
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[1]["choices"][0]["delta"], (json{{"content", "b"}}));
  EXPECT_EQ(f[1]["choices"][0]["finish_reason"], "stop");
  ASSERT_TRUE(as.done());
  f = payloads(as.closing_frames());
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0]["choices"], json::array());
  EXPECT_EQ(f[0]["usage"]["completion_tokens"], 3);
  EXPECT_EQ(f[1], "[DONE]");
}

TEST(ChatResponse, EngineErrorBecomesAnErrorFrame) {
  PreparedCompletion p = prepare(
      R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "stream": true})");
  ChatAssembler as({"chatcmpl-3", 5, "tiny"}, p, kTok);
  RequestEvent ev = step({}, "", "error");
  ev.error = "out of cache";
  std::vector<json> f = payloads(as.on_event(0, ev));
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[1]["error"]["message"], "out of cache");
  ASSERT_TRUE(as.error().has_value());
}

TEST(Cors, OffAllowedListAndWildcard) {
  const CorsPolicy off({});
  EXPECT_TRUE(off.reply_headers("http://a").empty());
  EXPECT_FALSE(off.preflight("OPTIONS", "http://a", "POST", "").has_value());

  const CorsPolicy some({"http://a", "https://b"});
  const HeaderList h = some.reply_headers("https://b");
  ASSERT_FALSE(h.empty());
  EXPECT_EQ(h[0],
            (std::pair<std::string, std::string>{"Access-Control-Allow-Origin", "https://b"}));
  EXPECT_TRUE(some.reply_headers("http://c").empty());
  EXPECT_TRUE(some.reply_headers("").empty());
  auto pre = some.preflight("OPTIONS", "http://a", "POST", "x-custom");
  ASSERT_TRUE(pre.has_value());
  EXPECT_EQ(pre->status, 204u);
  bool saw_headers = false;
  for (const auto& [k, v] : pre->headers)
    if (k == "Access-Control-Allow-Headers") saw_headers = v == "x-custom";
  EXPECT_TRUE(saw_headers);
  EXPECT_EQ(some.preflight("OPTIONS", "http://c", "POST", "")->status, 403u);
  // A plain OPTIONS (no Access-Control-Request-Method) is not a preflight.
  EXPECT_FALSE(some.preflight("OPTIONS", "http://a", "", "").has_value());
  EXPECT_FALSE(some.preflight("GET", "http://a", "POST", "").has_value());

  const CorsPolicy any({"*"});
  EXPECT_EQ(any.reply_headers("http://z").at(0).second, "*");
}

}  // namespace
}  // namespace xq
