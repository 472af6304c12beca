#include "engine/tokenizer/bpe_tokenizer.h"

#include <algorithm>

#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/utf8.h"

namespace xq {
namespace {

void replace_all(std::string& text, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  for (size_t pos = 0; (pos = text.find(from, pos)) != std::string::npos; pos += to.size())
    text.replace(pos, from.size(), to);
}

// "<0xNN>" -> the byte NN.
std::optional<char> byte_token_value(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return std::nullopt;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  int hi = hex(t[3]), lo = hex(t[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<char>(hi * 16 + lo);
}

}  // namespace

BpeTokenizer::BpeTokenizer(TokenizerParts parts)
    : model_(std::move(parts.model)),
      normalizer_(std::move(parts.normalizer)),
      pre_tokenizer_(std::move(parts.pre_tokenizer)),
      prefix_ids_(std::move(parts.prefix_ids)),
      suffix_ids_(std::move(parts.suffix_ids)),
      decoder_(std::move(parts.decoder)) {
  bos_id_ = parts.bos_id;
  eos_ids_ = std::move(parts.eos_ids);
  chat_template_ = std::move(parts.chat_template);
  add_bos_ = bos_id_ >= 0 &&
             std::find(prefix_ids_.begin(), prefix_ids_.end(), bos_id_) != prefix_ids_.end();

  int size = 0;
  for (const auto& [text, id] : model_->vocab()) size = std::max(size, id + 1);
  for (const AddedToken& t : parts.added_tokens) size = std::max(size, t.id + 1);
  bytes_.assign(size, std::string());
  special_.assign(size, false);
  for (const auto& [text, id] : model_->vocab()) {
    if (id < 0) throw TokenizerError("negative token id for \"" + text + "\"");
    bytes_[id] = decode_token_text(text);
  }
  for (const AddedToken& t : parts.added_tokens) {
    if (t.id < 0) throw TokenizerError("negative id for added token \"" + t.content + "\"");
    bytes_[t.id] = t.content;
    special_[t.id] = t.special;
    added_ids_[t.content] = t.id;
    (t.normalized ? normalized_matcher_ : raw_matcher_).add(t);
  }
  for (int id : prefix_ids_) check_id(id);
  for (int id : suffix_ids_) check_id(id);
}

std::string BpeTokenizer::decode_token_text(const std::string& text) const {
  std::string out = text;
  for (const DecodeOp& op : decoder_.ops) {
    switch (op.kind) {
      case DecodeOp::kReplace:
        replace_all(out, op.from, op.to);
        break;
      case DecodeOp::kByteFallback:
        if (auto b = byte_token_value(out)) out = std::string(1, *b);
        break;
      case DecodeOp::kByteLevel:
        // Characters outside the byte alphabet keep the token as written (HF does the same).
        if (auto bytes = ByteLevelMap::instance().decode(out)) out = std::move(*bytes);
        break;
    }
  }
  return out;
}

void BpeTokenizer::check_id(int id) const {
  if (id < 0 || id >= vocab_size()) {
    throw TokenizerError("token id " + std::to_string(id) + " is outside the vocabulary of " +
                         std::to_string(vocab_size()));
  }
}

std::vector<int> BpeTokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::string repaired;
  if (!utf8::is_valid(text)) {
    repaired = sanitize_utf8(text);
    text = repaired;
  }
  std::vector<int> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special_tokens) out = prefix_ids_;
  for (const TextSegment& seg : raw_matcher_.split(text)) {
    if (seg.token_id >= 0)
      out.push_back(seg.token_id);
    else
      encode_plain(seg.text, seg.offset == 0, out);
  }
  if (add_special_tokens) out.insert(out.end(), suffix_ids_.begin(), suffix_ids_.end());
  return out;
}

void BpeTokenizer::encode_plain(std::string_view text, bool at_start, std::vector<int>& out) const {
  std::string normalized(text);
  normalizer_.apply(normalized);
  if (normalized_matcher_.empty()) return encode_normalized(std::move(normalized), at_start, out);
  for (const TextSegment& seg : normalized_matcher_.split(normalized)) {
    if (seg.token_id >= 0)
      out.push_back(seg.token_id);
    else
      encode_normalized(std::string(seg.text), at_start && seg.offset == 0, out);
  }
}

void BpeTokenizer::encode_normalized(std::string text, bool at_start, std::vector<int>& out) const {
  for (const PreToken& piece : pre_tokenizer_.apply(std::move(text), at_start))
    model_->encode(piece.text, out);
}

std::string BpeTokenizer::token_bytes(int id) const {
  check_id(id);
  return bytes_[id];
}

std::string BpeTokenizer::decode(std::span<const int> ids, bool skip_special_tokens) const {
  std::string out;
  for (int id : ids) {
    check_id(id);
    if (skip_special_tokens && special_[id]) continue;
    out += bytes_[id];
  }
  int strip = 0;
  while (strip < decoder_.strip_leading_spaces && strip < static_cast<int>(out.size()) &&
         out[strip] == ' ')
    ++strip;
  out.erase(0, strip);
  return out;
}

bool BpeTokenizer::is_special(int id) const { return id >= 0 && id < vocab_size() && special_[id]; }

std::optional<int> BpeTokenizer::token_id(std::string_view token) const {
  auto it = added_ids_.find(token);
  if (it != added_ids_.end()) return it->second;
  return model_->find(token);
}

}  // namespace xq
