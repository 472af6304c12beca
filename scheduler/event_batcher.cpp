#include "scheduler/event_batcher.h"

#include <iterator>
#include <utility>

namespace xq {

namespace {
// Appends `later` to `earlier`: tokens and text in order; the counts are the later ones'.
void append(RequestEvent& earlier, RequestEvent&& later) {
  earlier.tokens.insert(earlier.tokens.end(), std::make_move_iterator(later.tokens.begin()),
                        std::make_move_iterator(later.tokens.end()));
  earlier.text += later.text;
  if (later.prompt_logprobs) earlier.prompt_logprobs = std::move(later.prompt_logprobs);
  earlier.prompt_tokens = later.prompt_tokens;
  earlier.completion_tokens = later.completion_tokens;
}
}  // namespace

std::optional<RequestEvent> EventBatcher::add(RequestEvent ev) {
  if (holding_) {
    append(held_, std::move(ev));
  } else {
    held_ = std::move(ev);
    holding_ = true;
  }
  // The first event that carries a token goes at once, whatever the interval.
  const bool first = !sent_first_ && !held_.tokens.empty();
  if (!first && held_tokens() < interval_) return std::nullopt;
  sent_first_ = sent_first_ || first;
  holding_ = false;
  return std::exchange(held_, RequestEvent{});
}

RequestEvent EventBatcher::flush(RequestEvent last) {
  if (!holding_) return last;
  holding_ = false;
  RequestEvent out = std::exchange(held_, RequestEvent{});
  append(out, std::move(last));
  out.finished = last.finished;
  out.finish_reason = std::move(last.finish_reason);
  out.error = std::move(last.error);
  out.arrival = last.arrival;
  out.first_token = last.first_token;
  out.finished_at = last.finished_at;
  return out;
}

}  // namespace xq
