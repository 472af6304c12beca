#include "engine/tokenizer/added_tokens.h"

#include <unicode/uchar.h>

#include <algorithm>

#include "engine/tokenizer/utf8.h"

namespace xq {
namespace {

// Code point of the character that ends just before `end` (valid UTF-8 assumed), or -1.
int32_t char_before(std::string_view s, size_t end, size_t* len) {
  size_t start = end;
  while (start > 0 && (static_cast<unsigned char>(s[start - 1]) & 0xC0) == 0x80 && end - start < 3)
    --start;
  if (start > 0) --start;
  size_t n = utf8::valid_sequence_length(s, start);
  *len = end - start;
  return n == *len ? static_cast<int32_t>(utf8::decode_at(s, start, n)) : -1;
}

int32_t char_at(std::string_view s, size_t pos, size_t* len) {
  size_t n = utf8::valid_sequence_length(s, pos);
  *len = n == 0 ? 1 : n;
  return n ? static_cast<int32_t>(utf8::decode_at(s, pos, n)) : -1;
}

bool is_word_char(int32_t cp) { return cp >= 0 && (u_isalnum(cp) || cp == '_'); }
bool is_space(int32_t cp) { return cp >= 0 && u_isUWhiteSpace(cp); }

}  // namespace

void AddedTokenMatcher::add(const AddedToken& token) {
  if (token.content.empty()) return;
  auto& list = by_first_byte_[static_cast<unsigned char>(token.content[0])];
  list.push_back(token);
  ++count_;
  std::stable_sort(list.begin(), list.end(), [](const AddedToken& a, const AddedToken& b) {
    return a.content.size() > b.content.size();
  });
}

std::vector<TextSegment> AddedTokenMatcher::split(std::string_view text) const {
  std::vector<TextSegment> out;
  size_t plain_start = 0, len = 0;
  for (size_t pos = 0; pos < text.size();) {
    const AddedToken* hit = nullptr;
    for (const AddedToken& t : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
      if (text.compare(pos, t.content.size(), t.content) == 0) {
        hit = &t;
        break;
      }
    }
    if (hit == nullptr) {
      ++pos;
      continue;
    }
    size_t begin = pos, end = pos + hit->content.size();
    if (hit->single_word) {
      bool word_before = begin > 0 && is_word_char(char_before(text, begin, &len));
      bool word_after = end < text.size() && is_word_char(char_at(text, end, &len));
      if (word_before || word_after) {
        pos = end;
        continue;
      }
    }
    if (hit->lstrip) {
      while (begin > plain_start && is_space(char_before(text, begin, &len))) begin -= len;
    }
    if (hit->rstrip) {
      while (end < text.size() && is_space(char_at(text, end, &len))) end += len;
    }
    if (plain_start < begin)
      out.push_back({-1, text.substr(plain_start, begin - plain_start), plain_start});
    out.push_back({hit->id, text.substr(begin, end - begin), begin});
    plain_start = pos = end;
  }
  if (plain_start < text.size()) out.push_back({-1, text.substr(plain_start), plain_start});
  return out;
}

}  // namespace xq
