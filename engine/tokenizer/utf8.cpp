#include "engine/tokenizer/utf8.h"

#include "engine/tokenizer/tokenizer.h"

namespace xq::utf8 {
namespace {

// Bounds of the second byte of a multi-byte sequence per lead byte (Unicode Table 3-7); later
// continuation bytes are always 0x80..0xBF.
struct LeadInfo {
  size_t len;
  unsigned char lo, hi;
};

LeadInfo lead_info(unsigned char b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// Number of bytes from pos that form a valid (possibly unfinished) prefix of one character.
size_t valid_prefix_length(std::string_view s, size_t pos, size_t* needed) {
  LeadInfo info = lead_info(static_cast<unsigned char>(s[pos]));
  *needed = info.len;
  if (info.len <= 1) return info.len;
  size_t n = 1;
  for (; n < info.len && pos + n < s.size(); ++n) {
    auto c = static_cast<unsigned char>(s[pos + n]);
    unsigned char lo = n == 1 ? info.lo : 0x80, hi = n == 1 ? info.hi : 0xBF;
    if (c < lo || c > hi) break;
  }
  return n;
}

}  // namespace

size_t valid_sequence_length(std::string_view s, size_t pos) {
  size_t needed = 0;
  size_t n = valid_prefix_length(s, pos, &needed);
  return n == needed ? n : 0;
}

bool is_valid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = valid_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

char32_t decode_at(std::string_view s, size_t pos, size_t len) {
  auto b = [&](size_t i) { return static_cast<char32_t>(static_cast<unsigned char>(s[pos + i])); };
  switch (len) {
    case 1:
      return b(0);
    case 2:
      return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3:
      return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default:
      return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

void append_codepoint(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace xq::utf8

namespace xq {

size_t complete_utf8_prefix(std::string_view s) {
  // Only the last character can be unfinished; it starts at most 3 bytes from the end.
  size_t start = s.size() > 3 ? s.size() - 3 : 0;
  for (size_t i = start; i < s.size(); ++i) {
    auto b = static_cast<unsigned char>(s[i]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: belongs to an earlier lead
    size_t needed = 0;
    size_t n = utf8::valid_prefix_length(s, i, &needed);
    if (needed > 1 && n < needed && i + n == s.size()) return i;
  }
  return s.size();
}

std::string sanitize_utf8(std::string_view s) {
  // One U+FFFD per maximal invalid subpart (the WHATWG / Unicode "best practice"), which is
  // also what Rust's from_utf8_lossy and Python's errors="replace" produce.
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t needed = 0;
    size_t n = utf8::valid_prefix_length(s, i, &needed);
    if (n == needed && n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += n == 0 ? 1 : n;
    }
  }
  return out;
}

}  // namespace xq
