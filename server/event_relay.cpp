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

// One drain at a time: `posted_` stays set until the queue is found empty, so a second drain on
// another HTTP thread cannot hand a later event to its session before an earlier one.
void EventRelay::drain() {
  std::vector<SessionEvent> batch;
  for (;;) {
    {
      std::lock_guard lk(mu_);
      if (pending_.empty()) {
        posted_ = false;
        return;
      }
      batch.clear();
      batch.swap(pending_);
    }
    for (SessionEvent& e : batch) {
      HttpSession& s = *e.session;
      s.deliver(std::move(e));
    }
  }
}

}  // namespace xq
