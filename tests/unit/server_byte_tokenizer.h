// ByteTokenizer: a complete tokenizer over single bytes (ids 0..255) plus BOS (256) and EOS (257),
// so the server's schema and response code can be tested without a model directory.
#pragma once

#include <string>

#include "engine/tokenizer/tokenizer.h"

namespace xq::testing {

class ByteTokenizer : public Tokenizer {
 public:
  static constexpr int kBos = 256;
  static constexpr int kEos = 257;

  explicit ByteTokenizer(bool add_bos = true) {
    bos_id_ = kBos;
    eos_ids_ = {kEos};
    add_bos_ = add_bos;
  }
  std::vector<int> encode(std::string_view text, bool add_special_tokens) const override {
    std::vector<int> ids;
    if (add_special_tokens && add_bos_) ids.push_back(kBos);
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  std::string token_bytes(int id) const override {
    if (id == kBos) return "<s>";
    if (id == kEos) return "</s>";
    return std::string(1, static_cast<char>(id));
  }
  std::string decode(std::span<const int> ids, bool skip_special_tokens) const override {
    std::string out;
    for (int id : ids)
      if (!(skip_special_tokens && is_special(id))) out += token_bytes(id);
    return out;
  }
  int vocab_size() const override { return 258; }
  bool is_special(int id) const override { return id >= kBos; }
  std::optional<int> token_id(std::string_view token) const override {
    if (token == "<s>") return kBos;
    if (token == "</s>") return kEos;
    if (token.size() == 1) return static_cast<unsigned char>(token[0]);
    return std::nullopt;
  }
};

}  // namespace xq::testing
