// Tokenizers built from raw vocabulary arrays (as GGUF files store them) instead of
// tokenizer.json; they share the BPE core of the tokenizer.json path.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace xq {

// GGUF tokenizer.ggml.token_type values; an empty token_types vector means all normal.
enum GgufTokenType {
  kTokenNormal = 1,
  kTokenUnknown = 2,
  kTokenControl = 3,
  kTokenUserDefined = 4,
  kTokenUnused = 5,
  kTokenByte = 6,
};

// SentencePiece BPE (Llama 2, Mistral, Gemma GGUFs): spaces become "▁" (plus one in front of
// each text run when add_space_prefix), text starts as UTF-8 characters, the adjacent pair
// whose concatenation is a token with the highest score merges first (leftmost on ties), and
// characters without a token become <0xNN> byte tokens (else the unknown token). Control and
// user-defined tokens are matched literally in the text first.
std::unique_ptr<Tokenizer> make_spm_tokenizer(std::vector<std::string> pieces,
                                              std::vector<float> scores,
                                              std::vector<int> token_types, int bos,
                                              std::vector<int> eos, bool add_bos,
                                              bool add_space_prefix,
                                              std::optional<std::string> chat_template);

// GPT-2 style byte-level BPE (Llama 3, Qwen2 GGUFs): pieces are in the byte-level alphabet,
// merges are "left right" in priority order, the text is split by each regex in turn
// (Isolated) before the byte mapping; no regexes means the GPT-2 pattern. ignore_merges takes a
// pre-token that is itself a token whole (Llama 3); nfc normalizes the text first (Qwen).
std::unique_ptr<Tokenizer> make_gpt2_bpe_tokenizer(
    std::vector<std::string> pieces, const std::vector<std::string>& merges,
    std::vector<int> token_types, const std::vector<std::string>& pre_tokenizer_regexes, int bos,
    std::vector<int> eos, bool add_bos, std::optional<std::string> chat_template,
    bool ignore_merges = false, bool nfc = false);

}  // namespace xq
