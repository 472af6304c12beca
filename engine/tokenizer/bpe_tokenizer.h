// The Tokenizer behind both tokenizer.json and GGUF vocabularies: added-token split, normalizer,
// pre-tokenizer, BPE model, template ids, and the bytes each token decodes to.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/tokenizer/added_tokens.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/normalizer.h"
#include "engine/tokenizer/pretokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace xq {

// How a (non-added) token's text becomes bytes, step by step, as the tokenizer's decoder says.
struct DecodeOp {
  enum Kind { kReplace, kByteFallback, kByteLevel } kind;
  std::string from, to;  // kReplace only
};

struct DecoderSpec {
  std::vector<DecodeOp> ops;
  int strip_leading_spaces = 0;  // SentencePiece dummy prefix: spaces dropped from the start
};

struct TokenizerParts {
  std::unique_ptr<BpeModel> model;
  std::vector<AddedToken> added_tokens;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  std::vector<int> prefix_ids;  // added around the text when add_special_tokens is set
  std::vector<int> suffix_ids;
  DecoderSpec decoder;
  int bos_id = -1;
  std::vector<int> eos_ids;
  std::optional<std::string> chat_template;
};

class BpeTokenizer : public Tokenizer {
 public:
  explicit BpeTokenizer(TokenizerParts parts);

  std::vector<int> encode(std::string_view text, bool add_special_tokens) const override;
  std::string token_bytes(int id) const override;
  std::string decode(std::span<const int> ids, bool skip_special_tokens) const override;
  int vocab_size() const override { return static_cast<int>(bytes_.size()); }
  bool is_special(int id) const override;
  std::optional<int> token_id(std::string_view token) const override;

 private:
  void encode_plain(std::string_view text, bool at_start, std::vector<int>& out) const;
  void encode_normalized(std::string text, bool at_start, std::vector<int>& out) const;
  std::string decode_token_text(const std::string& text) const;
  void check_id(int id) const;

  std::unique_ptr<BpeModel> model_;
  AddedTokenMatcher raw_matcher_;         // added tokens matched in the input as written
  AddedTokenMatcher normalized_matcher_;  // added tokens matched after normalization
  TokenMap added_ids_;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  std::vector<int> prefix_ids_, suffix_ids_;
  DecoderSpec decoder_;
  std::vector<std::string> bytes_;  // by id
  std::vector<bool> special_;       // by id
};

}  // namespace xq
