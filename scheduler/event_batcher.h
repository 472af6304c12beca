// EventBatcher: holds a streaming request's generated tokens between events, so that after its
// first token (sent at once: time to first token is unchanged) a client gets one event per
// `interval` tokens. Each event costs a post to the HTTP threads, a chunk to assemble and a
// socket write; --stream-interval trades the smoothness of a stream for fewer of them.
#pragma once

#include <optional>

#include "scheduler/request.h"

namespace xq {

class EventBatcher {
 public:
  explicit EventBatcher(int interval = 1) : interval_(interval < 1 ? 1 : interval) {}

  // Takes a step's event that does not finish the request. Returns what to send now (the held
  // tokens followed by ev's), or nullopt while fewer than `interval` tokens are held.
  std::optional<RequestEvent> add(RequestEvent ev);
  // The request's last event: whatever is held, followed by `last` (its fields win).
  RequestEvent flush(RequestEvent last);
  int held_tokens() const { return static_cast<int>(held_.tokens.size()); }

 private:
  int interval_;
  bool sent_first_ = false;
  bool holding_ = false;  // held_ has something in it
  RequestEvent held_;
};

}  // namespace xq
