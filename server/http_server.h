// HttpServer: the Asio io_context, its threads and the acceptor; each connection becomes an
// HttpSession. Start, stop accepting (drain), stop.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

// Boost 1.74 Asio uses std::exchange without including <utility>.
// clang-format off
#include <utility>
#include <boost/asio/thread_pool.hpp>
// clang-format on

#include "scheduler/engine_loop.h"
#include "server/cors.h"
#include "server/metrics.h"
#include "server/router.h"

namespace xq {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  // One thread (vLLM's API server is one asyncio loop too) runs every connection without
  // strands and hands engine events to a session inline; more threads parse and tokenize
  // requests in parallel, at the price of a strand post per streamed event.
  int threads = 1;
  size_t max_body_bytes = size_t{8} << 20;
  size_t max_header_bytes = 16 * 1024;
  std::vector<std::string> allowed_origins;  // CORS; empty: off
  std::chrono::seconds idle_timeout{120};    // waiting for (the rest of) a request
  std::chrono::seconds write_timeout{60};    // one write to a slow client
  int stream_interval = 1;  // tokens per streamed chunk after the first (--stream-interval)
  // Open connections at most (0: the file descriptor limit less a reserve). At the limit a new
  // connection takes the place of the one idle longest.
  size_t max_connections = 0;
  // Engine requests waiting to start at most, past which a request gets 503 (0: no limit).
  int max_queued_requests = 0;
  // Threads that parse, tokenize and render requests off the connection threads (0: by cores).
  int work_threads = 0;
};

// What every session shares; owned by the HttpServer.
class EventRelay;
class ConnectionTable;

struct SessionEnv {
  HttpOptions opts;
  const Router* router = nullptr;
  EngineLoop* loop = nullptr;
  ServerMetrics* metrics = nullptr;
  EventRelay* relay = nullptr;  // engine events to the connections
  ConnectionTable* connections = nullptr;
  boost::asio::thread_pool* workers = nullptr;  // request parsing and tokenization
  CorsPolicy cors{{}};
  std::atomic<bool> draining{false};
  std::atomic<int> active_jobs{0};
};

class HttpServer {
 public:
  HttpServer(HttpOptions opts, const Router& router, EngineLoop& loop, ServerMetrics& metrics);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds, listens and starts the threads; returns the bound port. Throws std::runtime_error.
  int start();
  // Closes the listening socket; requests arriving on open connections get 503.
  void stop_accepting();
  // The connection limit in force (--max-connections, or the one derived from the fd limit).
  size_t max_connections() const;
  // Generations still running.
  int active_jobs() const { return env_.active_jobs.load(); }
  // Stops the io_context and joins its threads; connections are dropped.
  void stop();

 private:
  void accept_next();
  void on_accept_error(const boost::system::error_code& ec);

  struct Impl;
  SessionEnv env_;
  std::unique_ptr<Impl> impl_;
  std::vector<std::thread> threads_;
};

}  // namespace xq
