#include "scheduler/output_processor.h"

#include <algorithm>

namespace xq {

namespace {
// Moves `pos` back to the start of the UTF-8 character it falls in.
size_t char_boundary_at_or_before(const std::string& s, size_t pos) {
  while (pos > 0 && pos < s.size() && (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80) --pos;
  return pos;
}
}  // namespace

OutputProcessor::OutputProcessor(const Tokenizer& tok, std::vector<std::string> stop,
                                 bool skip_special_tokens, bool include_stop)
    : detok_(tok, skip_special_tokens), stop_(std::move(stop)), include_stop_(include_stop) {
  std::erase_if(stop_, [](const std::string& s) { return s.empty(); });
  for (const auto& s : stop_) max_stop_len_ = std::max(max_stop_len_, s.size());
}

std::string OutputProcessor::release_up_to(size_t end) {
  if (end <= released_) return {};
  std::string out = text_.substr(released_, end - released_);
  released_ = end;
  return out;
}

std::string OutputProcessor::push(int token, bool may_stop) {
  if (stopped_) return {};
  const size_t before = text_.size();
  text_ += detok_.push(token);
  if (!stop_.empty() && may_stop) {
    // A stop string can only end inside the new text; it may start up to its length earlier.
    const size_t from = before >= max_stop_len_ ? before - max_stop_len_ + 1 : 0;
    size_t hit = std::string::npos;
    for (const auto& s : stop_) {
      const size_t at = text_.find(s, std::max(from, released_));
      if (at != std::string::npos && (at < hit || (at == hit && s.size() > matched_.size()))) {
        hit = at;
        matched_ = s;
      }
    }
    if (hit != std::string::npos) {
      stopped_ = true;
      return release_up_to(include_stop_ ? hit + matched_.size() : hit);
    }
    // Hold back the longest tail that could still grow into a stop string.
    size_t hold = 0;
    for (const auto& stop : stop_) {
      for (size_t k = std::min(stop.size() - 1, text_.size() - released_); k > hold; --k) {
        if (text_.compare(text_.size() - k, k, stop, 0, k) == 0) {
          hold = k;
          break;
        }
      }
    }
    return release_up_to(char_boundary_at_or_before(text_, text_.size() - hold));
  }
  return release_up_to(text_.size());
}

std::string OutputProcessor::finish() {
  if (stopped_) return {};
  text_ += detok_.flush();
  return release_up_to(text_.size());
}

}  // namespace xq
