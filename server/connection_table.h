// ConnectionTable: the open connections, counted against --max-connections, and the choice of
// which one to close when a new one needs its place (the one idle longest between requests).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>

namespace xq {

// What the table knows of a connection; thread-safe to read.
class TrackedConnection {
 public:
  virtual ~TrackedConnection() = default;
  // Closes the connection from its own executor; called from any thread.
  virtual void evict() = 0;
  // The time it started waiting for its next request, or nullopt while it runs one.
  virtual std::optional<std::chrono::steady_clock::time_point> idle_since() const = 0;
};

class ConnectionTable {
 public:
  using Handle = std::list<std::weak_ptr<TrackedConnection>>::iterator;

  explicit ConnectionTable(size_t max_connections) : max_(max_connections) {}
  size_t max() const { return max_; }
  size_t size() const;
  Handle add(std::weak_ptr<TrackedConnection> c);
  void remove(Handle h);
  // Closes the connection idle longest; false when every connection is running a request.
  bool evict_idlest();

 private:
  const size_t max_;
  mutable std::mutex mu_;
  std::list<std::weak_ptr<TrackedConnection>> conns_;
};

}  // namespace xq
