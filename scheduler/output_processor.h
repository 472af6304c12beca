// OutputProcessor: one request's generated tokens -> released text, with stop strings cut
// across token boundaries and never half a UTF-8 character released.
#pragma once

#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace xq {

class OutputProcessor {
 public:
  // include_stop: a matched stop string is released with the text before it.
  OutputProcessor(const Tokenizer& tok, std::vector<std::string> stop, bool skip_special_tokens,
                  bool include_stop = false);

  // Feeds one generated token; returns the text that can be released now. Sets stopped() when a
  // stop string completed (anything after it, and the string itself unless include_stop, is
  // never released). may_stop false (before min_tokens): stop strings are not looked for, and
  // the text so far is released whole.
  std::string push(int token, bool may_stop = true);
  // At the end of generation: whatever was held back (nothing when stopped on a string).
  std::string finish();
  bool stopped() const { return stopped_; }
  // The stop string that matched (when stopped()).
  const std::string& matched_stop() const { return matched_; }

 private:
  std::string release_up_to(size_t end);

  IncrementalDetokenizer detok_;
  std::vector<std::string> stop_;
  size_t max_stop_len_ = 0;
  std::string text_;      // everything decoded so far
  size_t released_ = 0;   // bytes of text_ handed out
  bool stopped_ = false;
  bool include_stop_ = false;
  std::string matched_;
};

}  // namespace xq
