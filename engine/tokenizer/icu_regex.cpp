#include "engine/tokenizer/icu_regex.h"

#include <unicode/regex.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <ctime>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace xq {
namespace {

// Oniguruma's \s is the Unicode White_Space property; ICU's \s leaves out U+000B and U+0085.
// Rewrite the escapes so both engines agree on what whitespace is.
std::string translate_pattern(const std::string& p) {
  std::string out;
  out.reserve(p.size() + 16);
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '\\' && i + 1 < p.size()) {
      char c = p[i + 1];
      if (c == 's') {
        out += "\\p{White_Space}";
      } else if (c == 'S') {
        out += "\\P{White_Space}";
      } else {
        out += p[i];
        out += c;
      }
      ++i;
    } else {
      out += p[i];
    }
  }
  return out;
}

// UTF-16 copy of valid UTF-8 text plus, for every UTF-16 index, the byte offset it starts at.
struct Utf16Text {
  icu::UnicodeString text;
  std::vector<size_t> byte_offset;
};

Utf16Text to_utf16(std::string_view s) {
  Utf16Text out;
  out.byte_offset.reserve(s.size() + 1);
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8::char_length(s, i);
    char32_t cp = utf8::valid_sequence_length(s, i) ? utf8::decode_at(s, i, n) : 0xFFFD;
    out.text.append(static_cast<UChar32>(cp));
    out.byte_offset.push_back(i);
    if (cp >= 0x10000) out.byte_offset.push_back(i);
    i += n;
  }
  out.byte_offset.push_back(s.size());
  return out;
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// The CPU time one find_all may take. A split regex runs at ~150 ns per character of ordinary
// text, so any text the server accepts fits with a wide margin; a pattern from a model's files
// that backtracks catastrophically, or looks ahead over the rest of the text from every
// position, would take hours. CPU time rather than the wall clock, so that a loaded machine
// does not turn a slow tokenization into an error.
struct MatchBudget {
  double deadline;  // thread CPU seconds
  bool over() const { return thread_cpu_seconds() > deadline; }
};

// ICU calls this every 10,000 steps inside one find(): a long backtracking match stops here.
UBool U_CALLCONV within_budget(const void* context, int32_t /*steps*/) {
  return !static_cast<const MatchBudget*>(context)->over();
}

// ICU's backtracking stack grows with the length of a run that a pattern may give back (about
// 28 bytes per character for the Llama 3 / GPT-2 `\s+(?!\S)` over a run of spaces); its
// default 8 MB failed prompts with 300k spaces in a row, which Hugging Face tokenizes.
int32_t stack_limit(int32_t units) {
  const int64_t bytes = (int64_t{8} << 20) + int64_t{64} * units;
  return static_cast<int32_t>(std::min<int64_t>(bytes, INT32_MAX));
}

}  // namespace

double IcuRegex::cpu_budget_seconds(size_t bytes) {
  return 0.25 + 4e-6 * static_cast<double>(bytes);
}

IcuRegex::IcuRegex(const std::string& pattern) : pattern_(pattern) {
  UErrorCode status = U_ZERO_ERROR;
  UParseError parse_error{};
  icu::UnicodeString upattern = icu::UnicodeString::fromUTF8(translate_pattern(pattern));
  // Ruby syntax (what Oniguruma uses for tokenizers) treats ^ and $ as line anchors.
  compiled_.reset(icu::RegexPattern::compile(upattern, UREGEX_MULTILINE, parse_error, status));
  if (U_FAILURE(status)) {
    throw TokenizerError("tokenizer regex rejected by ICU (" + std::string(u_errorName(status)) +
                         " at offset " + std::to_string(parse_error.offset) + "): " + pattern);
  }
}

IcuRegex::~IcuRegex() = default;
IcuRegex::IcuRegex(IcuRegex&&) noexcept = default;

std::vector<std::pair<size_t, size_t>> IcuRegex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  if (text.empty()) return matches;
  Utf16Text u = to_utf16(text);
  UErrorCode status = U_ZERO_ERROR;
  std::unique_ptr<icu::RegexMatcher> m(compiled_->matcher(u.text, status));
  const MatchBudget budget{thread_cpu_seconds() + cpu_budget_seconds(text.size())};
  if (U_SUCCESS(status)) m->setMatchCallback(within_budget, &budget, status);
  if (U_SUCCESS(status)) m->setStackLimit(stack_limit(u.text.length()), status);
  if (U_FAILURE(status)) {
    throw TokenizerError("cannot run tokenizer regex: " + std::string(u_errorName(status)));
  }
  bool over = false;
  // A find() that ends quickly never reaches the callback: between finds the clock is read
  // every 64 matches (a read costs about as much as a short find).
  for (uint32_t n = 1; m->find(status) && U_SUCCESS(status); ++n) {
    int32_t b = m->start(status), e = m->end(status);
    if (b < e) matches.emplace_back(u.byte_offset[b], u.byte_offset[e]);
    if (n % 64 == 0 && budget.over()) {
      over = true;
      break;
    }
  }
  if (over || status == U_REGEX_STOPPED_BY_CALLER) {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%.2f", cpu_budget_seconds(text.size()));
    throw TokenizerError("tokenizer regex took more than " + std::string(seconds) +
                         " s of CPU on a text of " + std::to_string(text.size()) +
                         " bytes (a pattern that backtracks without bound?): " + pattern_);
  }
  if (U_FAILURE(status)) {
    throw TokenizerError("tokenizer regex failed (" + std::string(u_errorName(status)) +
                         "): " + pattern_);
  }
  return matches;
}

}  // namespace xq
