#include "server/connection_table.h"

#include <vector>

namespace xq {

size_t ConnectionTable::size() const {
  std::lock_guard lk(mu_);
  return conns_.size();
}

ConnectionTable::Handle ConnectionTable::add(std::weak_ptr<TrackedConnection> c) {
  std::lock_guard lk(mu_);
  return conns_.insert(conns_.end(), std::move(c));
}

void ConnectionTable::remove(Handle h) {
  std::lock_guard lk(mu_);
  conns_.erase(h);
}

bool ConnectionTable::evict_idlest() {
  // Locked outside the table's mutex: the last reference to a connection may go here, and its
  // destructor removes it from the table.
  std::vector<std::weak_ptr<TrackedConnection>> all;
  {
    std::lock_guard lk(mu_);
    all.assign(conns_.begin(), conns_.end());
  }
  std::shared_ptr<TrackedConnection> victim;
  std::optional<std::chrono::steady_clock::time_point> oldest;
  for (const auto& weak : all) {
    auto c = weak.lock();
    if (!c) continue;
    const auto since = c->idle_since();
    if (since && (!oldest || *since < *oldest)) {
      oldest = since;
      victim = std::move(c);
    }
  }
  if (!victim) return false;
  victim->evict();
  return true;
}

}  // namespace xq
