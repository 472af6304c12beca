#include "engine/tokenizer/normalizer.h"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include "engine/tokenizer/icu_regex.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace xq {
namespace {

void replace_all(std::string& text, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(text, pos, hit - pos);
    out += to;
  }
  if (pos == 0) return;
  out.append(text, pos, std::string::npos);
  text = std::move(out);
}

const icu::Normalizer2* icu_normalizer(UnicodeForm form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (form) {
    case UnicodeForm::kNFC:
      n = icu::Normalizer2::getNFCInstance(status);
      break;
    case UnicodeForm::kNFD:
      n = icu::Normalizer2::getNFDInstance(status);
      break;
    case UnicodeForm::kNFKC:
      n = icu::Normalizer2::getNFKCInstance(status);
      break;
    case UnicodeForm::kNFKD:
      n = icu::Normalizer2::getNFKDInstance(status);
      break;
  }
  if (U_FAILURE(status) || n == nullptr) {
    throw TokenizerError("ICU Unicode normalizer unavailable: " + std::string(u_errorName(status)));
  }
  return n;
}

std::string to_utf8(const icu::UnicodeString& s) {
  std::string out;
  s.toUTF8String(out);
  return out;
}

bool is_space_at(const std::string& s, size_t pos, size_t* len) {
  *len = utf8::char_length(s, pos);
  size_t n = utf8::valid_sequence_length(s, pos);
  return n > 0 && u_isUWhiteSpace(static_cast<UChar32>(utf8::decode_at(s, pos, n)));
}

}  // namespace

NormalizeStep prepend_step(std::string prefix) {
  return [prefix = std::move(prefix)](std::string& text) {
    if (!text.empty()) text.insert(0, prefix);
  };
}

NormalizeStep replace_step(std::string from, std::string to) {
  return [from = std::move(from), to = std::move(to)](std::string& text) {
    replace_all(text, from, to);
  };
}

NormalizeStep regex_replace_step(std::shared_ptr<const IcuRegex> pattern, std::string to) {
  return [pattern = std::move(pattern), to = std::move(to)](std::string& text) {
    auto matches = pattern->find_all(text);
    if (matches.empty()) return;
    std::string out;
    size_t pos = 0;
    for (auto [b, e] : matches) {
      out.append(text, pos, b - pos);
      out += to;
      pos = e;
    }
    out.append(text, pos, std::string::npos);
    text = std::move(out);
  };
}

NormalizeStep unicode_form_step(UnicodeForm form) {
  const icu::Normalizer2* n = icu_normalizer(form);
  return [n](std::string& text) {
    UErrorCode status = U_ZERO_ERROR;
    icu::UnicodeString u = icu::UnicodeString::fromUTF8(text);
    if (n->isNormalized(u, status) && U_SUCCESS(status)) return;
    status = U_ZERO_ERROR;
    icu::UnicodeString normal = n->normalize(u, status);
    if (U_FAILURE(status)) throw TokenizerError("Unicode normalization failed");
    text = to_utf8(normal);
  };
}

NormalizeStep lowercase_step() {
  return [](std::string& text) {
    icu::UnicodeString u = icu::UnicodeString::fromUTF8(text);
    text = to_utf8(u.toLower(icu::Locale::getRoot()));
  };
}

NormalizeStep strip_step(bool left, bool right) {
  return [left, right](std::string& text) {
    size_t begin = 0, end = text.size(), len = 0;
    while (left && begin < end && is_space_at(text, begin, &len)) begin += len;
    if (right) {
      // Walk forward remembering where the trailing whitespace run starts.
      size_t run = end;
      for (size_t i = begin; i < end; i += len) {
        bool space = is_space_at(text, i, &len);
        if (!space)
          run = end;
        else if (run == end)
          run = i;
      }
      end = run;
    }
    text = text.substr(begin, end - begin);
  };
}

}  // namespace xq
