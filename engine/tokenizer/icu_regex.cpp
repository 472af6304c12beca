#include "engine/tokenizer/icu_regex.h"

#include <unicode/regex.h>
#include <unicode/unistr.h>

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

}  // namespace

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
  if (U_FAILURE(status)) {
    throw TokenizerError("cannot run tokenizer regex: " + std::string(u_errorName(status)));
  }
  while (m->find(status) && U_SUCCESS(status)) {
    int32_t b = m->start(status), e = m->end(status);
    if (b < e) matches.emplace_back(u.byte_offset[b], u.byte_offset[e]);
  }
  if (U_FAILURE(status)) {
    throw TokenizerError("tokenizer regex failed (" + std::string(u_errorName(status)) +
                         "): " + pattern_);
  }
  return matches;
}

}  // namespace xq
