// GGUF checkpoints as a WeightSource with Hugging Face tensor names and Hugging Face semantics,
// plus the ModelConfig their metadata describes.
#pragma once

#include <memory>
#include <string>

#include "config/model_config.h"
#include "engine/weights/gguf_file.h"
#include "engine/weights/weight_source.h"

namespace xq {

// The Hugging Face name of a llama.cpp tensor name for `arch` (general.architecture: "llama",
// "qwen2", "gemma3"), e.g. "blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight".
// Names without a mapping are returned unchanged.
std::string gguf_to_hf_name(const std::string& arch, const std::string& gguf_name);

// Tensors of `file` under Hugging Face names. Undoes what llama.cpp's converter changed:
// gemma3 norm weights lose the +1 it folded in, llama Q/K rows get back the HF head layout.
// Throws WeightError for an unsupported architecture or tensor type.
std::unique_ptr<WeightSource> open_gguf_weights(std::shared_ptr<const GgufFile> file);

// Hyper-parameters from the GGUF metadata ({arch}.* keys, tokenizer ids, tensor presence), with
// the Gemma 3 constants llama.cpp hard-codes. Throws ConfigError naming the key.
ModelConfig gguf_model_config(const GgufFile& file);

}  // namespace xq
