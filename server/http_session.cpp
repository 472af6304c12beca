#include "server/http_session.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdio>

#include "server/http_wire.h"
#include "server/logging.h"
#include "server/request_id.h"

namespace xq {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// How much a client that sent too much may still send before the connection is cut.
constexpr size_t kLingerBytes = size_t{256} << 20;
constexpr auto kLingerTime = std::chrono::seconds(5);

std::string_view view(beast::string_view s) { return {s.data(), s.size()}; }

}  // namespace

HttpSession::HttpSession(tcp::socket&& socket, SessionEnv& env)
    : stream_(std::move(socket)), env_(env) {
  // Synchronous calls on the socket (pump_frames' direct write, watch_disconnect's peek) must
  // return would_block instead of waiting; Asio's async operations work the same either way.
  beast::error_code ignored;
  stream_.socket().non_blocking(true, ignored);
  // A streamed token is a small write; with Nagle's algorithm it would wait for the client's
  // (possibly delayed) ACK of the previous one whenever that is still in flight.
  stream_.socket().set_option(tcp::no_delay(true), ignored);
}

HttpSession::~HttpSession() {
  if (table_entry_) env_.connections->remove(*table_entry_);
}

void HttpSession::run() {
  table_entry_ = env_.connections->add(weak_from_this());
  net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_request(); });
}

void HttpSession::evict() {
  idle_since_ns_ = -1;  // not chosen again while the close is on its way
  net::post(stream_.get_executor(), [self = shared_from_this()] {
    if (self->job_) return;  // a request arrived meanwhile: it runs to its end
    self->close();
  });
}

std::optional<std::chrono::steady_clock::time_point> HttpSession::idle_since() const {
  const int64_t ns = idle_since_ns_.load();
  if (ns < 0) return std::nullopt;
  return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ns));
}

void HttpSession::read_request() {
  idle_since_ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::steady_clock::now().time_since_epoch())
                       .count();
  cors_headers_.clear();
  parser_.emplace();
  limit_parser(*parser_, env_.opts.max_body_bytes, env_.opts.max_header_bytes);
  stream_.expires_after(env_.opts.idle_timeout);
  http::async_read_header(
      stream_, buffer_, *parser_,
      [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
}

// The header alone comes first so that a client waiting on "Expect: 100-continue" (curl does for
// bodies over 1 KiB) is told to go on instead of stalling.
void HttpSession::on_header(beast::error_code ec) {
  if (ec) return on_read(ec);
  auto read_body = [self = shared_from_this()] {
    http::async_read(self->stream_, self->buffer_, *self->parser_,
                     [self](beast::error_code ec, size_t) { self->on_read(ec); });
  };
  if (!beast::iequals(parser_->get()[http::field::expect], "100-continue")) return read_body();
  static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
  net::async_write(stream_, net::buffer(kContinue),
                   [self = shared_from_this(), read_body](beast::error_code ec, size_t) {
                     if (ec) return self->close();
                     read_body();
                   });
}

void HttpSession::on_read(beast::error_code ec) {
  if (!ec) return handle();
  const auto& head = parser_->get();
  begin_request(view(head.method_string()), view(head.target()), view(head["X-Request-Id"]));
  if (auto reply = read_failure_reply(ec, env_.opts.max_body_bytes))
    return send_reply(*reply, true, true);
  close();  // end of stream, timeout, reset
}

void HttpSession::handle() {
  idle_since_ns_ = -1;
  req_ = parser_->release();
  keep_alive_ = req_.keep_alive();
  head_ = req_.method() == http::verb::head;
  HttpRequestIn in = request_in(req_);
  const std::string origin(req_[http::field::origin]);
  cors_headers_ = env_.cors.reply_headers(origin);
  begin_request(view(req_.method_string()), view(req_.target()), view(req_["X-Request-Id"]));
  const RequestLogScope log_scope(request_id_);
  if (auto pre = env_.cors.preflight(
          in.method, origin, std::string(req_[http::field::access_control_request_method]),
          std::string(req_[http::field::access_control_request_headers])))
    return send_reply(*pre, !keep_alive_);
  if (env_.draining)
    return send_reply(error_reply(unavailable("The server is shutting down")), true);
  if (in.method != "POST") return on_routed(env_.router->dispatch(in));
  // Parsing, template rendering and tokenizing a large body take seconds: on a worker, so that
  // this connection thread goes on serving the others (and /health).
  stream_.expires_never();
  net::post(*env_.workers, [self = shared_from_this(), in = std::move(in)]() mutable {
    RouteResult r;
    {
      const RequestLogScope scope(self->request_id_);
      r = self->env_.router->dispatch(in);
    }
    net::post(self->stream_.get_executor(),
              [self, r = std::move(r)]() mutable { self->on_routed(std::move(r)); });
  });
}

void HttpSession::on_routed(RouteResult r) {
  const RequestLogScope log_scope(request_id_);
  if (r.reply.status >= 500) spdlog::error("{} {}: {}", method_, target_, r.reply.body);
  if (r.job) return start_job(std::move(r.job));
  send_reply(r.reply, !keep_alive_);
}

void HttpSession::begin_request(std::string_view method, std::string_view target,
                                std::string_view client_id) {
  request_id_ = request_id_for(client_id);
  method_ = method;
  target_ = target;
  request_start_ = std::chrono::steady_clock::now();
  access_logged_ = false;
}

// One line per request at info: method, path, status, tokens of a generation, latency.
void HttpSession::log_access(unsigned status) {
  if (access_logged_) return;
  access_logged_ = true;
  const RequestLogScope log_scope(request_id_);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - request_start_)
          .count();
  if (!job_) return spdlog::info("{} {} {} {:.1f}ms", method_, target_, status, ms);
  int prompt = 0, completion = 0;
  for (const PreparedPrompt& p : job_->prep.prompts) prompt += static_cast<int>(p.ids.size());
  for (int i = 0; i < job_->assembler->num_choices(); ++i)
    completion += job_->assembler->completion_tokens(i);
  spdlog::info("{} {} {} prompt_tokens={} completion_tokens={} {:.1f}ms", method_, target_, status,
               prompt, completion, ms);
}

void HttpSession::send_reply(const HttpReply& reply, bool close_after, bool linger) {
  log_access(reply.status);
  auto after = [self = shared_from_this(), close_after, linger](beast::error_code ec) {
    if (ec) return self->close();
    if (linger) return self->linger_close();
    if (close_after) return self->close();
    self->read_request();
  };
  auto head = [&](auto& res) {
    set_reply_head(res, reply, request_id_, cors_headers_, !close_after);
  };
  stream_.expires_after(env_.opts.write_timeout);
  const auto status = static_cast<http::status>(reply.status);
  if (head_) {  // the headers a GET would get, Content-Length included, and no body
    auto res = std::make_shared<http::response<http::empty_body>>(status, 11);
    head(*res);
    res->content_length(reply.body.size());
    http::async_write(stream_, *res, [res, after](beast::error_code ec, size_t) { after(ec); });
    return;
  }
  auto res = std::make_shared<http::response<Body>>(status, 11);
  head(*res);
  res->body() = reply.body;
  res->prepare_payload();
  http::async_write(stream_, *res, [res, after](beast::error_code ec, size_t) { after(ec); });
}

void HttpSession::close() {
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
  stream_.close();
}

// Reading what the client still sends before closing lets it see the error reply instead of a
// connection reset.
void HttpSession::linger_close() {
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream_.expires_after(kLingerTime);
  linger_buf_ = std::make_unique<std::array<char, 65536>>();
  lingered_ = 0;
  linger_read();
}

void HttpSession::linger_read() {
  stream_.async_read_some(net::buffer(*linger_buf_),
                          [self = shared_from_this()](beast::error_code ec, size_t n) {
                            self->lingered_ += n;
                            if (ec || self->lingered_ > kLingerBytes) return self->close();
                            self->linger_read();
                          });
}

void HttpSession::start_job(std::shared_ptr<CompletionJob> job) {
  // The drain may have begun while a worker parsed this request.
  if (env_.draining)
    return send_reply(error_reply(unavailable("The server is shutting down")), true);
  const int n = job->assembler->num_choices();
  const int limit = env_.opts.max_queued_requests;
  if (limit > 0 && env_.loop->queued() + n > limit) {
    env_.metrics->on_queue_full();
    HttpReply reply = error_reply(
        unavailable("The server is busy: " + std::to_string(limit) +
                    " requests are already waiting (--max-queued-requests); retry later"));
    reply.headers.emplace_back("Retry-After", "1");
    return send_reply(reply, !keep_alive_);
  }
  job_ = std::move(job);
  const uint64_t serial = ++serial_;
  ids_.clear();
  choice_done_.assign(n, false);
  frames_.clear();
  writing_ = false;
  stream_closing_ = false;
  ++env_.active_jobs;
  stream_.expires_never();
  auto self = shared_from_this();
  try {
    for (int i = 0; i < n; ++i) {
      // Only a stream is cut into chunks; a whole response waits for the last event anyway.
      if (job_->prep.body.stream)
        job_->prep.requests[i].stream_interval = env_.opts.stream_interval;
      ids_.push_back(
          env_.loop->submit(std::move(job_->prep.requests[i]), [self, serial, i](RequestEvent ev) {
            self->env_.relay->push({self, serial, i, std::move(ev)});
          }));
    }
  } catch (const std::exception& e) {
    for (uint64_t id : ids_) env_.loop->abort(id);
    end_job();
    return send_reply(error_reply(unavailable(e.what())), !keep_alive_);
  }
  if (job_->prep.body.stream) write_stream_head();
  watch_disconnect();
}

void HttpSession::deliver(SessionEvent e) {
  // The relay drains on an HTTP thread: with only one, that is this session's thread already.
  if (env_.opts.threads == 1) return on_event(e.serial, e.choice, std::move(e.ev));
  net::post(stream_.get_executor(), [e = std::move(e)]() mutable {
    e.session->on_event(e.serial, e.choice, std::move(e.ev));
  });
}

void HttpSession::on_event(uint64_t serial, int choice, RequestEvent ev) {
  if (serial != serial_ || !job_) return;
  // Assembling a response allocates (a whole body of many choices): running out of memory
  // fails this request, never the connection thread (an exception leaving it ends the process).
  try {
    take_event(choice, std::move(ev));
  } catch (const std::exception& e) {
    spdlog::error("{}: {}", job_ ? job_->meta.id : "request", e.what());
    if (!job_) return close();
    if (job_->prep.body.stream) return client_gone();
    for (size_t i = 0; i < ids_.size(); ++i)
      if (!choice_done_[i]) env_.loop->abort(ids_[i]);
    end_job();
    send_reply(error_reply(internal_error(e.what())), true);
  }
}

void HttpSession::take_event(int choice, RequestEvent ev) {
  ResponseAssembler& as = *job_->assembler;
  std::vector<std::string> frames = as.on_event(choice, ev);
  if (ev.finished && !choice_done_[choice]) {
    choice_done_[choice] = true;
    const auto& prompt = job_->prep.prompts[job_->prep.choice_prompt[choice]].ids;
    env_.metrics->on_request_finished(
        ev.finish_reason, ev.prompt_tokens > 0 ? ev.prompt_tokens : static_cast<int>(prompt.size()),
        std::max(ev.completion_tokens, as.completion_tokens(choice)), &ev);
  }
  if (!job_->prep.body.stream) {
    if (!as.done()) return;
    const HttpReply reply = as.error() ? error_reply(*as.error()) : json_reply(as.final_body());
    if (as.error()) {
      const RequestLogScope log_scope(request_id_);
      spdlog::error("{}: {}", job_->meta.id, as.error()->what());
    }
    log_access(reply.status);
    end_job();
    return send_reply(reply, !keep_alive_);
  }
  for (std::string& f : frames) frames_.push_back(std::move(f));
  if (as.done() && !stream_closing_) {
    for (std::string& f : as.closing_frames()) frames_.push_back(std::move(f));
    stream_closing_ = true;
  }
  pump_frames();
}

void HttpSession::write_stream_head() {
  stream_res_ = std::make_unique<http::response<http::empty_body>>(http::status::ok, 11);
  stream_res_->set(http::field::server, "xquant-server");
  stream_res_->set(http::field::content_type, "text/event-stream");
  stream_res_->set(http::field::cache_control, "no-cache");
  stream_res_->set("X-Request-Id", request_id_);
  for (const auto& [name, value] : cors_headers_) stream_res_->set(name, value);
  // HTTP/1.0 has no chunked encoding: the stream is the raw body, ended by closing.
  chunked_ = req_.version() >= 11;
  if (!chunked_) keep_alive_ = false;
  stream_res_->keep_alive(keep_alive_);
  stream_res_->chunked(chunked_);
  stream_sr_ = std::make_unique<http::response_serializer<http::empty_body>>(*stream_res_);
  writing_ = true;
  stream_.expires_after(env_.opts.write_timeout);
  http::async_write_header(
      stream_, *stream_sr_,
      [self = shared_from_this(), serial = serial_](beast::error_code ec, size_t) {
        if (serial != self->serial_) return;
        self->writing_ = false;
        if (ec) return self->client_gone();
        self->pump_frames();
      });
}

namespace {

// HTTP/1.1 chunked framing of `data` (and the last chunk when `last`), appended to `out`.
void append_chunk(std::string& out, const std::string& data, bool last) {
  if (!data.empty()) {
    char size[20];
    const int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    out.append(size, n);
    out += data;
    out += "\r\n";
  }
  if (last) out += "0\r\n\r\n";
}

}  // namespace

// Everything queued goes out as one HTTP chunk (SSE is a byte stream: events need not align with
// chunks), followed by the last chunk once the stream is complete. It is first handed to the
// socket directly: a streamed token normally fits its send buffer, and an async write costs a
// timer armed and cancelled and a completion handler per token besides the send. Only what the
// socket does not take (a slow reader) goes through an async write with the write timeout.
void HttpSession::pump_frames() {
  if (writing_ || (frames_.empty() && !stream_closing_)) return;
  std::string data;
  for (const std::string& f : frames_) data += f;
  frames_.clear();
  const bool last = stream_closing_;
  out_.clear();
  if (chunked_) {
    append_chunk(out_, data, last);
  } else {
    out_ = std::move(data);
  }
  if (out_.empty()) return on_frames_written(last, {});

  beast::error_code ec;
  const size_t sent = stream_.socket().write_some(net::buffer(out_), ec);
  if (ec && ec != net::error::would_block && ec != net::error::try_again) return client_gone();
  if (!ec && sent == out_.size()) return on_frames_written(last, {});

  auto self = shared_from_this();
  stream_.expires_after(env_.opts.write_timeout);
  writing_ = true;
  net::async_write(stream_, net::buffer(out_.data() + sent, out_.size() - sent),
                   [self, serial = serial_, last](beast::error_code ec, size_t) {
                     if (serial != self->serial_) return;
                     self->writing_ = false;
                     self->on_frames_written(last, ec);
                   });
}

void HttpSession::on_frames_written(bool last, beast::error_code ec) {
  if (!last) return ec ? client_gone() : pump_frames();
  log_access(200);
  end_job();
  if (ec || !keep_alive_) return close();
  read_request();
}

void HttpSession::end_job() {
  if (!job_) return;
  job_.reset();
  ++serial_;  // late events and handlers of this job are dropped
  ids_.clear();
  // out_ and the stream serializer stay: a write still in flight reads them.
  --env_.active_jobs;
}

void HttpSession::client_gone() {
  if (job_) {
    for (size_t i = 0; i < ids_.size(); ++i) {
      if (choice_done_[i]) continue;
      env_.loop->abort(ids_[i]);
      const auto& prompt = job_->prep.prompts[job_->prep.choice_prompt[i]].ids;
      env_.metrics->on_request_finished("abort", static_cast<int>(prompt.size()),
                                        job_->assembler->completion_tokens(static_cast<int>(i)));
    }
    {
      const RequestLogScope log_scope(request_id_);
      spdlog::info("{}: client went away, request aborted", job_->meta.id);
    }
    // 499: nginx's code for a client that closed the connection before the reply was done.
    log_access(499);
    end_job();
  }
  close();
}

// While a generation runs nothing is read, so readability of the socket means the client closed
// it (or pipelined the next request, which is left for the next read).
void HttpSession::watch_disconnect() {
  stream_.socket().async_wait(
      tcp::socket::wait_read, [self = shared_from_this(), serial = serial_](beast::error_code ec) {
        if (serial != self->serial_ || !self->job_ || ec == net::error::operation_aborted) return;
        if (!ec) {
          char byte = 0;
          beast::error_code peek_ec;
          const size_t n = self->stream_.socket().receive(net::buffer(&byte, 1),
                                                          tcp::socket::message_peek, peek_ec);
          if (peek_ec == net::error::would_block || peek_ec == net::error::try_again)
            return self->watch_disconnect();
          if (!peek_ec && n > 0) return;
        }
        self->client_gone();
      });
}

}  // namespace xq
