#include "engine/tokenizer/chat_template_strings.h"

#include <unicode/locid.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace xq::jinja {
namespace {

bool ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Python's str.isspace() code points (what strip() and split() without arguments remove).
bool py_space(UChar32 c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

UChar32 next_cp(const std::string& s, size_t& k) {
  int32_t i = static_cast<int32_t>(k);
  UChar32 c;
  U8_NEXT(s.data(), i, static_cast<int32_t>(s.size()), c);
  k = static_cast<size_t>(i);
  return c;
}

UChar32 prev_cp(const std::string& s, size_t& k) {
  int32_t i = static_cast<int32_t>(k);
  UChar32 c;
  U8_PREV(s.data(), 0, i, c);
  k = static_cast<size_t>(i);
  return c;
}

// Byte length of the whitespace code point at / before k (0 if there is none).
size_t space_at(const std::string& s, size_t k) {
  size_t j = k;
  return k < s.size() && py_space(next_cp(s, j)) ? j - k : 0;
}
size_t space_before(const std::string& s, size_t k) {
  size_t j = k;
  return k > 0 && py_space(prev_cp(s, j)) ? k - j : 0;
}

}  // namespace

std::string strip(const std::string& s, const std::string& chars, bool custom, bool left,
                  bool right) {
  std::vector<UChar32> set;
  for (size_t k = 0; custom && k < chars.size();) set.push_back(next_cp(chars, k));
  auto drop = [&](UChar32 c) {
    return custom ? std::find(set.begin(), set.end(), c) != set.end() : py_space(c);
  };
  size_t b = 0, e = s.size();
  while (left && b < e) {
    size_t j = b;
    if (!drop(next_cp(s, j))) break;
    b = j;
  }
  while (right && e > b) {
    size_t j = e;
    if (!drop(prev_cp(s, j))) break;
    e = j;
  }
  return s.substr(b, e - b);
}

std::vector<std::string> split(const std::string& s, const std::string& sep, bool whitespace,
                               int64_t maxsplit) {
  std::vector<std::string> out;
  if (whitespace) {
    size_t k = 0;
    while (k < s.size()) {
      while (size_t n = space_at(s, k)) k += n;
      if (k >= s.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        out.push_back(s.substr(k));  // Python keeps the remainder's trailing whitespace
        break;
      }
      size_t start = k;
      while (k < s.size() && !space_at(s, k)) next_cp(s, k);
      out.push_back(s.substr(start, k - start));
    }
    return out;
  }
  if (sep.empty()) throw std::invalid_argument("empty separator");
  size_t start = 0;
  for (;;) {
    size_t at = s.find(sep, start);
    if (at == std::string::npos ||
        (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit)) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, at - start));
    start = at + sep.size();
  }
}

std::vector<std::string> rsplit(const std::string& s, const std::string& sep, bool whitespace,
                                int64_t maxsplit) {
  if (maxsplit < 0) return split(s, sep, whitespace, maxsplit);
  if (whitespace) {
    std::vector<std::string> out;
    size_t k = s.size();
    while (k > 0) {
      while (size_t n = space_before(s, k)) k -= n;
      if (k == 0) break;
      if (static_cast<int64_t>(out.size()) == maxsplit) {
        out.push_back(s.substr(0, k));
        break;
      }
      size_t end = k;
      while (k > 0 && !space_before(s, k)) prev_cp(s, k);
      out.push_back(s.substr(k, end - k));
    }
    return {out.rbegin(), out.rend()};
  }
  if (sep.empty()) throw std::invalid_argument("empty separator");
  std::vector<std::string> out;
  size_t end = s.size();
  while (static_cast<int64_t>(out.size()) < maxsplit) {
    size_t at = end >= sep.size() ? s.rfind(sep, end - sep.size()) : std::string::npos;
    if (at == std::string::npos) break;
    out.push_back(s.substr(at + sep.size(), end - at - sep.size()));
    end = at;
  }
  out.push_back(s.substr(0, end));
  return {out.rbegin(), out.rend()};
}

std::vector<std::string> splitlines(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t k = 0; k < s.size(); ++k) {
    if (s[k] == '\n' || s[k] == '\r') {
      out.push_back(s.substr(start, k - start));
      if (s[k] == '\r' && k + 1 < s.size() && s[k + 1] == '\n') ++k;
      start = k + 1;
    }
  }
  if (start < s.size()) out.push_back(s.substr(start));
  return out;
}

std::string replace(const std::string& s, const std::string& from, const std::string& to,
                    int64_t count) {
  std::string out;
  if (from.empty()) {
    // Python inserts `to` between characters (and at both ends).
    int64_t n = 0;
    for (size_t k = 0; k <= s.size(); ++k) {
      if (count < 0 || n < count) {
        out += to;
        ++n;
      }
      if (k < s.size()) out += s[k];
    }
    return out;
  }
  size_t start = 0;
  int64_t n = 0;
  for (size_t at; (count < 0 || n < count) && (at = s.find(from, start)) != std::string::npos;
       ++n) {
    out += s.substr(start, at - start) + to;
    start = at + from.size();
  }
  return out + s.substr(start);
}

int64_t count_substr(const std::string& s, const std::string& sub) {
  if (sub.empty()) return 0;
  int64_t n = 0;
  for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
  return n;
}

// Full Unicode case mapping (ICU root locale), as Python's str.upper()/lower() do.
std::string to_upper(std::string s) {
  std::string out;
  icu::UnicodeString::fromUTF8(s).toUpper(icu::Locale::getRoot()).toUTF8String(out);
  return out;
}

std::string to_lower(std::string s) {
  std::string out;
  icu::UnicodeString::fromUTF8(s).toLower(icu::Locale::getRoot()).toUTF8String(out);
  return out;
}

namespace {

// Maps code points one by one: `first` for the first cased letter of a word, `rest` for others.
// A word starts after a character for which `breaks` is true.
template <typename Breaks>
std::string map_words(const std::string& s, Breaks breaks, bool only_first_word) {
  std::string out;
  bool word_start = true, seen_word = false;
  int32_t i = 0, n = static_cast<int32_t>(s.size());
  while (i < n) {
    UChar32 c;
    int32_t start = i;
    U8_NEXT(s.data(), i, n, c);
    if (c < 0) {
      out.append(s, start, i - start);
      continue;
    }
    UChar32 mapped = c;
    if (breaks(c)) {
      word_start = true;
    } else {
      bool upper = word_start && !(only_first_word && seen_word);
      mapped = upper ? u_totitle(c) : u_tolower(c);
      word_start = false;
      seen_word = true;
    }
    char buf[U8_MAX_LENGTH];
    int32_t len = 0;
    U8_APPEND_UNSAFE(buf, len, mapped);
    out.append(buf, static_cast<size_t>(len));
  }
  return out;
}

}  // namespace

std::string capitalize(const std::string& s) {
  return map_words(
      s, [](UChar32) { return false; }, true);
}

std::string py_title(const std::string& s) {
  return map_words(
      s, [](UChar32 c) { return !u_hasBinaryProperty(c, UCHAR_CASED); }, false);
}

std::string jinja_title(const std::string& s) {
  return map_words(
      s,
      [](UChar32 c) {
        return u_isUWhiteSpace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
      },
      false);
}

bool char_class_all(const std::string& s, const std::string& cls) {
  if (s.empty()) return false;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    bool ok = cls == "isdigit"   ? std::isdigit(u)
              : cls == "isalpha" ? std::isalpha(u)
              : cls == "isspace" ? ws(c)
                                 : std::isalnum(u);
    if (!ok) return false;
  }
  return true;
}

}  // namespace xq::jinja
