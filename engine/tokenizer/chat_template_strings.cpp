#include "engine/tokenizer/chat_template_strings.h"

#include <cctype>
#include <stdexcept>

namespace xq::jinja {
namespace {

bool ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool alpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }
char up(char c) { return static_cast<char>(std::toupper(static_cast<unsigned char>(c))); }
char low(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

}  // namespace

std::string strip(const std::string& s, const std::string& chars, bool custom, bool left,
                  bool right) {
  auto drop = [&](char c) { return custom ? chars.find(c) != std::string::npos : ws(c); };
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && drop(s[b])) ++b;
  if (right)
    while (e > b && drop(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::vector<std::string> split(const std::string& s, const std::string& sep, bool whitespace,
                               int64_t maxsplit) {
  std::vector<std::string> out;
  if (whitespace) {
    size_t k = 0;
    while (k < s.size()) {
      while (k < s.size() && ws(s[k])) ++k;
      if (k >= s.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        size_t e = s.size();
        while (e > k && ws(s[e - 1])) --e;
        out.push_back(s.substr(k, e - k));
        break;
      }
      size_t start = k;
      while (k < s.size() && !ws(s[k])) ++k;
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

std::string to_upper(std::string s) {
  for (char& c : s) c = up(c);
  return s;
}

std::string to_lower(std::string s) {
  for (char& c : s) c = low(c);
  return s;
}

std::string capitalize(const std::string& s) {
  std::string out = to_lower(s);
  if (!out.empty()) out[0] = up(out[0]);
  return out;
}

std::string py_title(const std::string& s) {
  std::string out = s;
  bool prev_cased = false;
  for (char& c : out) {
    if (alpha(c)) {
      c = prev_cased ? low(c) : up(c);
      prev_cased = true;
    } else {
      prev_cased = false;
    }
  }
  return out;
}

std::string jinja_title(const std::string& s) {
  auto sep = [](char c) {
    return ws(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
  };
  std::string out = s;
  bool start = true;
  for (char& c : out) {
    if (sep(c)) {
      start = true;
    } else {
      c = start ? up(c) : low(c);
      start = false;
    }
  }
  return out;
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
