#include "engine/tokenizer/byte_level.h"

#include "engine/tokenizer/utf8.h"

namespace xq {

const ByteLevelMap& ByteLevelMap::instance() {
  static const ByteLevelMap map;
  return map;
}

ByteLevelMap::ByteLevelMap() {
  char_to_byte_.fill(-1);
  // Printable Latin-1 bytes stand for themselves; the others (controls, space, 0x7F-0xA0, 0xAD)
  // are moved to U+0100 onwards in byte order, so that no token contains whitespace.
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    char32_t cp = printable ? static_cast<char32_t>(b) : next++;
    utf8::append_codepoint(byte_to_char_[b], cp);
    char_to_byte_[cp] = b;
  }
}

std::string ByteLevelMap::encode(std::string_view bytes) const {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += byte_to_char_[b];
  return out;
}

std::optional<std::string> ByteLevelMap::decode(std::string_view text) const {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    size_t n = utf8::valid_sequence_length(text, i);
    if (n == 0) return std::nullopt;
    char32_t cp = utf8::decode_at(text, i, n);
    if (cp >= char_to_byte_.size() || char_to_byte_[cp] < 0) return std::nullopt;
    out += static_cast<char>(char_to_byte_[cp]);
    i += n;
  }
  return out;
}

}  // namespace xq
