// OutputProcessor: one request's generated tokens -> released text, with stop strings cut
// across token boundaries and never half a UTF-8 character released.
#pragma once

#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace xq {

class OutputProcessor {
 public:
  OutputProcessor(const Tokenizer& tok, std::vector<std::string> stop, bool skip_special_tokens);

  // Feeds one generated token; returns the text that can be released now. Sets stopped() when a
  // stop string completed (the stop string and anything after it are never released).
  std::string push(int token);
  // At the end of generation: whatever was held back (nothing when stopped on a string).
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  std::string release_up_to(size_t end);

  IncrementalDetokenizer detok_;
  std::vector<std::string> stop_;
  size_t max_stop_len_ = 0;
  std::string text_;      // everything decoded so far
  size_t released_ = 0;   // bytes of text_ handed out
  bool stopped_ = false;
};

}  // namespace xq
