#include "server/event_relay.h"

#include <boost/asio/post.hpp>

#include "server/http_session.h"

namespace xq {

void EventRelay::push(SessionEvent e) {
  {
    std::lock_guard lk(mu_);
    pending_.push_back(std::move(e));
    if (posted_) return;
    posted_ = true;
  }
  boost::asio::post(ioc_, [this] { drain(); });
}

void EventRelay::drain() {
  std::vector<SessionEvent> batch;
  {
    std::lock_guard lk(mu_);
    batch.swap(pending_);
    posted_ = false;
  }
  for (SessionEvent& e : batch) {
    HttpSession& s = *e.session;
    s.deliver(std::move(e));
  }
}

}  // namespace xq
