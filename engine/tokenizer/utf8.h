// UTF-8 helpers shared by the tokenizer: character stepping, validation, codepoint encoding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace xq::utf8 {

// Length of the valid UTF-8 sequence starting at s[pos], or 0 if the bytes there are not one
// (bad lead byte, bad continuation, overlong form, surrogate, > U+10FFFF, or truncated).
size_t valid_sequence_length(std::string_view s, size_t pos);

// Byte length of the character at s[pos] for stepping through text that may be invalid: the
// valid sequence length, or 1 for an invalid byte.
inline size_t char_length(std::string_view s, size_t pos) {
  size_t n = valid_sequence_length(s, pos);
  return n == 0 ? 1 : n;
}

bool is_valid(std::string_view s);

// Decodes the valid sequence at s[pos] (caller checked it with valid_sequence_length).
char32_t decode_at(std::string_view s, size_t pos, size_t len);

void append_codepoint(std::string& out, char32_t cp);

}  // namespace xq::utf8
