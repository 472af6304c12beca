// EventRelay: carries the engine's per-token events to the connections with one post to the
// HTTP threads per burst instead of one per event. A post from the engine thread may wake a
// sleeping HTTP thread (a futex or eventfd syscall): at 64 streams that was 64 wake-ups a step,
// and each event paid for a handler holding a copy of its connection's executor.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

// Boost 1.74 Asio uses std::exchange without including <utility>.
// clang-format off
#include <utility>
#include <boost/asio/io_context.hpp>
// clang-format on

#include "scheduler/request.h"

namespace xq {

class HttpSession;

struct SessionEvent {
  std::shared_ptr<HttpSession> session;
  uint64_t serial = 0;  // the session's job the event belongs to
  int choice = 0;
  RequestEvent ev;
};

class EventRelay {
 public:
  explicit EventRelay(boost::asio::io_context& ioc) : ioc_(ioc) {}

  // Thread-safe. The event reaches its session on an HTTP thread, in push order.
  void push(SessionEvent e);

 private:
  void drain();

  boost::asio::io_context& ioc_;
  std::mutex mu_;
  std::vector<SessionEvent> pending_;  // guarded by mu_
  bool posted_ = false;                // a drain is queued; guarded by mu_
};

}  // namespace xq
