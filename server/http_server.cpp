#include "server/http_server.h"

#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

// Boost 1.74 Asio uses std::exchange without including <utility>.
// clang-format off
#include <utility>
#include <boost/asio.hpp>
// clang-format on
#include <algorithm>
#include <stdexcept>

#include "server/connection_table.h"
#include "server/event_relay.h"
#include "server/http_session.h"

namespace xq {

namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// File descriptors kept back from connections for the model files, the log, epoll, the pools'
// pipes and the like.
constexpr size_t kReservedFds = 64;

size_t default_max_connections() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return 65536;
  const auto fds = static_cast<size_t>(lim.rlim_cur);
  return fds > kReservedFds + 16 ? fds - kReservedFds : 16;
}

int default_work_threads() {
  return static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 2u, 8u));
}

}  // namespace

struct HttpServer::Impl {
  Impl(int threads, size_t max_connections, int work_threads)
      : connections(max_connections),
        ioc(threads),
        acceptor(net::make_strand(ioc)),
        retry(acceptor.get_executor()),
        relay(ioc),
        workers(static_cast<size_t>(work_threads)) {}
  // First, so it is destroyed last: sessions still held by the io_context's and the pool's
  // handlers leave the table as those are destroyed.
  ConnectionTable connections;
  net::io_context ioc;
  tcp::acceptor acceptor;
  net::steady_timer retry;  // the next accept after running out of descriptors
  std::chrono::milliseconds backoff{0};
  EventRelay relay;
  net::thread_pool workers;
  std::chrono::steady_clock::time_point last_warning;
  uint64_t failures_since_warning = 0;
};

HttpServer::HttpServer(HttpOptions opts, const Router& router, EngineLoop& loop,
                       ServerMetrics& metrics)
    : impl_(std::make_unique<Impl>(
          opts.threads, opts.max_connections > 0 ? opts.max_connections : default_max_connections(),
          opts.work_threads > 0 ? opts.work_threads : default_work_threads())) {
  env_.opts = std::move(opts);
  env_.cors = CorsPolicy(env_.opts.allowed_origins);
  env_.router = &router;
  env_.loop = &loop;
  env_.metrics = &metrics;
  env_.relay = &impl_->relay;
  env_.connections = &impl_->connections;
  env_.workers = &impl_->workers;
}

size_t HttpServer::max_connections() const { return impl_->connections.max(); }

HttpServer::~HttpServer() { stop(); }

namespace {

bool out_of_descriptors(const boost::system::error_code& ec) {
  return ec == net::error::no_descriptors || ec == boost::system::errc::too_many_files_open ||
         ec == boost::system::errc::too_many_files_open_in_system;
}

// A connection past the limit with no idle one to make room for it: told so and closed at once
// (a non-blocking write: the 503 fits any socket's send buffer).
void refuse(tcp::socket& s) {
  static const std::string kFull =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: "
      "close\r\nRetry-After: 1\r\nContent-Length: 121\r\n\r\n"
      "{\"error\":{\"message\":\"Too many open connections\",\"type\":\"service_unavailable\","
      "\"param\":null,\"code\":\"too_many_connections\"}}";
  boost::system::error_code ec;
  s.non_blocking(true, ec);
  s.write_some(net::buffer(kFull), ec);
  s.shutdown(tcp::socket::shutdown_both, ec);
  s.close(ec);
}

}  // namespace

void HttpServer::accept_next() {
  auto& acceptor = impl_->acceptor;
  auto on_accept = [this](boost::system::error_code ec, tcp::socket s) {
    if (!impl_->acceptor.is_open()) return;
    if (ec) return on_accept_error(ec);
    impl_->backoff = std::chrono::milliseconds(0);
    if (impl_->connections.size() >= impl_->connections.max() &&
        !impl_->connections.evict_idlest()) {
      refuse(s);
    } else {
      std::make_shared<HttpSession>(std::move(s), env_)->run();
    }
    accept_next();
  };
  // With one thread the io_context is itself the strand of every connection.
  if (env_.opts.threads == 1) return acceptor.async_accept(impl_->ioc.get_executor(), on_accept);
  acceptor.async_accept(net::make_strand(impl_->ioc), on_accept);
}

// Out of descriptors, accept fails at once for as long as the backlog holds a connection:
// retrying at once spins a core and floods the log. A connection idle longest gives its
// descriptor back, the next accept waits (up to a second), and the warning is written at most
// every ten seconds with the count of failures since.
void HttpServer::on_accept_error(const boost::system::error_code& ec) {
  Impl& m = *impl_;
  ++m.failures_since_warning;
  const auto now = std::chrono::steady_clock::now();
  if (now - m.last_warning > std::chrono::seconds(10)) {
    spdlog::warn("accept failed: {} ({} time(s) since the last warning; {} connections open)",
                 ec.message(), m.failures_since_warning, m.connections.size());
    m.last_warning = now;
    m.failures_since_warning = 0;
  }
  if (!out_of_descriptors(ec)) return accept_next();
  const bool freed = m.connections.evict_idlest();
  m.backoff = freed ? std::chrono::milliseconds(5)
                    : std::clamp(m.backoff * 2, std::chrono::milliseconds(10),
                                 std::chrono::milliseconds(1000));
  m.retry.expires_after(m.backoff);
  m.retry.async_wait([this](boost::system::error_code wait_ec) {
    if (!wait_ec && impl_->acceptor.is_open()) accept_next();
  });
}

namespace {

tcp::endpoint resolve(net::io_context& ioc, const std::string& host, int port) {
  boost::system::error_code ec;
  tcp::resolver resolver(ioc);
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty())
    throw std::runtime_error("cannot resolve host '" + host + "': " + ec.message());
  return results.begin()->endpoint();
}

}  // namespace

int HttpServer::start() {
  const tcp::endpoint ep = resolve(impl_->ioc, env_.opts.host, env_.opts.port);
  boost::system::error_code ec;
  auto& acc = impl_->acceptor;
  auto fail = [&](const char* what) {
    throw std::runtime_error(std::string("cannot listen on ") + env_.opts.host + ":" +
                             std::to_string(env_.opts.port) + ": " + what + ": " + ec.message());
  };
  if (acc.open(ep.protocol(), ec); ec) fail("open");
  if (acc.set_option(net::socket_base::reuse_address(true), ec); ec) fail("reuse_address");
  if (acc.bind(ep, ec); ec) fail("bind");
  if (acc.listen(net::socket_base::max_listen_connections, ec); ec) fail("listen");
  const int port = acc.local_endpoint().port();
  accept_next();
  for (int i = 0; i < env_.opts.threads; ++i) {
    threads_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "xq-http");  // found by name in /proc for CPU accounting
      impl_->ioc.run();
    });
  }
  return port;
}

void HttpServer::stop_accepting() {
  env_.draining = true;
  net::post(impl_->acceptor.get_executor(), [this] {
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
    impl_->retry.cancel();
  });
}

void HttpServer::stop() {
  impl_->ioc.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  impl_->workers.stop();
  impl_->workers.join();
}

}  // namespace xq
