#include "server/http_server.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

// Boost 1.74 Asio uses std::exchange without including <utility>.
// clang-format off
#include <utility>
#include <boost/asio.hpp>
// clang-format on
#include <stdexcept>

#include "server/event_relay.h"
#include "server/http_session.h"

namespace xq {

namespace net = boost::asio;
using tcp = net::ip::tcp;

struct HttpServer::Impl {
  explicit Impl(int threads) : ioc(threads), acceptor(net::make_strand(ioc)), relay(ioc) {}
  net::io_context ioc;
  tcp::acceptor acceptor;
  EventRelay relay;
};

HttpServer::HttpServer(HttpOptions opts, const Router& router, EngineLoop& loop,
                       ServerMetrics& metrics)
    : impl_(std::make_unique<Impl>(opts.threads)) {
  env_.opts = std::move(opts);
  env_.cors = CorsPolicy(env_.opts.allowed_origins);
  env_.router = &router;
  env_.loop = &loop;
  env_.metrics = &metrics;
  env_.relay = &impl_->relay;
}

HttpServer::~HttpServer() { stop(); }

namespace {

void accept_loop(tcp::acceptor& acceptor, net::io_context& ioc, SessionEnv& env) {
  auto on_accept = [&](boost::system::error_code ec, tcp::socket s) {
    if (!acceptor.is_open()) return;
    if (ec) {
      spdlog::warn("accept failed: {}", ec.message());
    } else {
      std::make_shared<HttpSession>(std::move(s), env)->run();
    }
    accept_loop(acceptor, ioc, env);
  };
  // With one thread the io_context is itself the strand of every connection.
  if (env.opts.threads == 1) return acceptor.async_accept(ioc.get_executor(), on_accept);
  acceptor.async_accept(net::make_strand(ioc), on_accept);
}

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
  accept_loop(acc, impl_->ioc, env_);
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
  });
}

void HttpServer::stop() {
  impl_->ioc.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

}  // namespace xq
