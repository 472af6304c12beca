// Added tokens (specials like "<|eot_id|>" and user-defined pieces): found in raw text before
// any normalization, leftmost-longest, and turned straight into their ids.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace xq {

struct AddedToken {
  int id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false;       // also swallows whitespace on its left
  bool rstrip = false;       // also swallows whitespace on its right
  bool single_word = false;  // only matches when not inside a word
  bool normalized = false;   // matched in normalized text instead of raw text
};

// A piece of text: either an added token's id, or plain text for the normal pipeline.
struct TextSegment {
  int token_id;  // -1 for plain text
  std::string_view text;
  size_t offset;  // where `text` starts in the string that was split
};

class AddedTokenMatcher {
 public:
  void add(const AddedToken& token);
  bool empty() const { return count_ == 0; }
  // Splits `text` at every match; matches never overlap and the longest wins at a position.
  std::vector<TextSegment> split(std::string_view text) const;

 private:
  // Candidates per first byte, longest first.
  std::array<std::vector<AddedToken>, 256> by_first_byte_;
  size_t count_ = 0;
};

}  // namespace xq
