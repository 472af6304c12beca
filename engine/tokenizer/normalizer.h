// The "normalizer" of tokenizer.json: steps that rewrite each text segment between added
// tokens before pre-tokenization (Llama 2 style "▁" escaping, NFC, ...).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace xq {

class IcuRegex;

using NormalizeStep = std::function<void(std::string&)>;

class Normalizer {
 public:
  void add(NormalizeStep step) { steps_.push_back(std::move(step)); }
  void apply(std::string& text) const {
    for (const auto& step : steps_) step(text);
  }
  bool empty() const { return steps_.empty(); }

 private:
  std::vector<NormalizeStep> steps_;
};

enum class UnicodeForm { kNFC, kNFD, kNFKC, kNFKD };

// Prepends `prefix` to non-empty text.
NormalizeStep prepend_step(std::string prefix);
NormalizeStep replace_step(std::string from, std::string to);
NormalizeStep regex_replace_step(std::shared_ptr<const IcuRegex> pattern, std::string to);
NormalizeStep unicode_form_step(UnicodeForm form);
NormalizeStep lowercase_step();
// Removes leading and/or trailing whitespace.
NormalizeStep strip_step(bool left, bool right);

}  // namespace xq
