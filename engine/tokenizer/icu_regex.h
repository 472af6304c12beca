// A compiled tokenizer regex (Oniguruma-style patterns from tokenizer.json) run by ICU over
// UTF-8 text, reporting matches as byte ranges.
#pragma once

#include <unicode/uversion.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

U_NAMESPACE_BEGIN
class RegexPattern;
U_NAMESPACE_END

namespace xq {

class IcuRegex {
 public:
  // Throws TokenizerError naming the pattern if ICU rejects it.
  explicit IcuRegex(const std::string& pattern);
  ~IcuRegex();
  IcuRegex(IcuRegex&&) noexcept;

  // Non-overlapping matches of the pattern in `text` (valid UTF-8), as [begin, end) byte
  // offsets, in order; empty matches are left out. Throws TokenizerError naming the pattern
  // when matching takes more than cpu_budget_seconds() (a pattern that backtracks without bound).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
  // The CPU time allowed on a text of `bytes`: tens of times what the split patterns of real
  // tokenizers take.
  static double cpu_budget_seconds(size_t bytes);

  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  std::unique_ptr<icu::RegexPattern> compiled_;
};

}  // namespace xq
