// IncrementalDetokenizer: streams token bytes out as whole UTF-8 characters.
#include "engine/tokenizer/tokenizer.h"

namespace xq {

std::string IncrementalDetokenizer::push(int id) {
  if (skip_special_ && tok_.is_special(id)) return {};
  pending_ += tok_.token_bytes(id);
  size_t n = complete_utf8_prefix(pending_);
  // Bytes that can never become a character are passed on as U+FFFD rather than held.
  std::string out = sanitize_utf8(std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return out;
}

std::string IncrementalDetokenizer::flush() {
  std::string out = sanitize_utf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace xq
