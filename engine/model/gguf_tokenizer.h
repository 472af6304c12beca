// The tokenizer a GGUF file describes in its tokenizer.ggml.* metadata.
#pragma once

#include <memory>

#include "config/model_config.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/weights/gguf_file.h"

namespace xq {

// tokenizer.ggml.model "llama" (SentencePiece with scores) or "gpt2" (byte-level BPE with
// merges; tokenizer.ggml.pre picks the pre-tokenizer regexes). End-of-generation ids are those
// of `cfg` (eos, eot, and Gemma's <end_of_turn>). Throws TokenizerError naming the file and key.
std::unique_ptr<Tokenizer> gguf_tokenizer(const GgufFile& file, const ModelConfig& cfg);

}  // namespace xq
