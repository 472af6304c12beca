// Builders for the parts of a HF tokenizer.json (normalizer, pre_tokenizer, post_processor,
// decoder, BPE model) from their JSON objects.
#pragma once

#include <nlohmann/json.hpp>

#include "engine/tokenizer/bpe_tokenizer.h"

namespace xq::hf {

// Each throws TokenizerError naming the field and type it cannot handle.
void add_normalizer(const nlohmann::json& j, Normalizer& out);
void add_pre_tokenizer(const nlohmann::json& j, PreTokenizer& out);
void add_decoder(const nlohmann::json& j, DecoderSpec& out);
// Ids the post_processor puts before and after a single sequence; returns false if there is no
// post_processor that says anything about special tokens.
bool read_post_processor(const nlohmann::json& j, std::vector<int>& prefix,
                         std::vector<int>& suffix);
std::unique_ptr<BpeModel> read_bpe_model(const nlohmann::json& j);
std::vector<AddedToken> read_added_tokens(const nlohmann::json& j);
// A token id: a JSON integer in [0, 2^24) (nlohmann's get<int>() truncates a larger integer and
// is undefined for a float out of int's range). TokenizerError naming `what` otherwise.
int token_id(const nlohmann::json& v, const std::string& what);

}  // namespace xq::hf
