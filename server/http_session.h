// HttpSession: one connection. Reads a request (with body and header limits and timeouts),
// routes it, writes the reply, and keeps the connection alive; a completion job is submitted to
// the engine and answered as JSON at the end or streamed as chunked SSE. A client that goes away
// mid-generation has its requests aborted in the engine.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
// Boost 1.74 Asio uses std::exchange without including <utility>.
// clang-format off
#include <utility>
#include <boost/asio.hpp>
// clang-format on
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/connection_table.h"
#include "server/event_relay.h"
#include "server/http_server.h"

namespace xq {

class HttpSession : public std::enable_shared_from_this<HttpSession>, public TrackedConnection {
 public:
  HttpSession(boost::asio::ip::tcp::socket&& socket, SessionEnv& env);
  ~HttpSession() override;
  void run();
  void evict() override;
  std::optional<std::chrono::steady_clock::time_point> idle_since() const override;
  // From the EventRelay, on an HTTP thread: hands the event to this session's strand (or
  // handles it at once when the server runs one HTTP thread).
  void deliver(SessionEvent e);

 private:
  using Body = boost::beast::http::string_body;

  void read_request();
  void on_header(boost::beast::error_code ec);
  void on_read(boost::beast::error_code ec);
  void handle();
  // The route's answer, back on this connection's executor.
  void on_routed(RouteResult r);
  // Writes a whole reply; then reads the next request, or closes (close, or an error status
  // after a broken read, where `linger` drains what the client still sends first).
  void send_reply(const HttpReply& reply, bool close, bool linger = false);
  void close();
  void linger_close();
  void linger_read();

  // A new request id (the client's X-Request-Id when usable) and the access log's start time.
  void begin_request(std::string_view method, std::string_view target, std::string_view client_id);
  // The access log line of the current request, once its status is known.
  void log_access(unsigned status);

  void start_job(std::shared_ptr<CompletionJob> job);
  void on_event(uint64_t serial, int choice, RequestEvent ev);
  void take_event(int choice, RequestEvent ev);
  void end_job();
  void client_gone();
  void watch_disconnect();
  void write_stream_head();
  void pump_frames();
  void on_frames_written(bool last, boost::beast::error_code ec);

  boost::beast::tcp_stream stream_;
  SessionEnv& env_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<Body>> parser_;
  boost::beast::http::request<Body> req_;
  HeaderList cors_headers_;  // for every reply to the current request
  bool head_ = false;        // a HEAD request: the reply's headers only
  bool chunked_ = true;      // the stream is chunked (not for HTTP/1.0 clients)
  std::optional<ConnectionTable::Handle> table_entry_;
  // Nanoseconds (steady clock) since the connection began waiting for a request; -1 while it
  // runs one or after it was evicted.
  std::atomic<int64_t> idle_since_ns_{-1};

  // The running job, if any. Events of an older job (serial) are dropped.
  std::shared_ptr<CompletionJob> job_;
  uint64_t serial_ = 0;
  std::vector<uint64_t> ids_;
  std::vector<bool> choice_done_;
  bool keep_alive_ = true;
  std::string request_id_;
  std::string method_, target_;  // of the current request, for the access log
  std::chrono::steady_clock::time_point request_start_;
  bool access_logged_ = false;  // one access-log line per request, whichever path ends it
  std::deque<std::string> frames_;  // SSE frames not yet written
  std::string out_;                 // the chunk being written
  bool writing_ = false;
  bool stream_closing_ = false;  // all frames queued; the last chunk follows them
  std::unique_ptr<boost::beast::http::response<boost::beast::http::empty_body>> stream_res_;
  std::unique_ptr<boost::beast::http::response_serializer<boost::beast::http::empty_body>>
      stream_sr_;
  std::unique_ptr<std::array<char, 65536>> linger_buf_;
  size_t lingered_ = 0;
};

}  // namespace xq
