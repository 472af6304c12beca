// The "pre_tokenizer" of tokenizer.json: splits a normalized segment into the pieces that BPE
// encodes independently (regex splits, byte-level mapping, Metaspace, digit splits).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace xq {

class IcuRegex;

struct PreToken {
  std::string text;
  bool at_start;  // starts at offset 0 of the whole input (Metaspace prepend_scheme "first")
};

// One step maps one piece to the pieces it becomes (it may take the piece's text).
using PreTokenizeStep = std::function<void(PreToken& piece, std::vector<PreToken>& out)>;

class PreTokenizer {
 public:
  void add(PreTokenizeStep step) { steps_.push_back(std::move(step)); }
  std::vector<PreToken> apply(std::string text, bool at_start) const;

 private:
  std::vector<PreTokenizeStep> steps_;
};

// What happens to the matched part of a split (HF SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
enum class PrependScheme { kFirst, kAlways, kNever };

SplitBehavior parse_split_behavior(const std::string& name);

PreTokenizeStep regex_split_step(std::shared_ptr<const IcuRegex> pattern, SplitBehavior behavior,
                                 bool invert);
PreTokenizeStep string_split_step(std::string delimiter, SplitBehavior behavior, bool invert);
// GPT-2 byte-level: optional GPT-2 regex split, then each byte mapped to its alphabet character.
PreTokenizeStep byte_level_step(bool add_prefix_space, bool use_regex);
PreTokenizeStep metaspace_step(std::string replacement, PrependScheme scheme, bool split);
PreTokenizeStep digits_step(bool individual_digits);

}  // namespace xq
