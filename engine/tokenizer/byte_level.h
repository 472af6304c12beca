// GPT-2 byte-level alphabet: every byte as a printable Unicode character, and back.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace xq {

class ByteLevelMap {
 public:
  static const ByteLevelMap& instance();

  // Each byte of `bytes` replaced by its (UTF-8 encoded) alphabet character.
  std::string encode(std::string_view bytes) const;
  // The bytes the alphabet characters of `text` stand for; nullopt if a character is not in the
  // alphabet (the caller then keeps the text as it is, like the HF ByteLevel decoder).
  std::optional<std::string> decode(std::string_view text) const;

 private:
  ByteLevelMap();
  std::array<std::string, 256> byte_to_char_;
  std::array<int, 324> char_to_byte_;  // code points of the alphabet are all below 324
};

}  // namespace xq
