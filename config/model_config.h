// ModelConfig: the hyper-parameters of a decoder-only transformer, from a Hugging Face
// config.json (Llama 2/3/3.1, Mistral, Qwen2) or from GGUF metadata (Gemma 3).
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace xq {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The two block layouts the engine implements. Llama covers Llama, Mistral and Qwen2.
enum class Arch { Llama, Gemma3 };

struct RopeScaling {
  std::string type = "none";  // "none", "linear", "llama3"
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position = 8192;
};

struct ModelConfig {
  // Per-layer tables are built from the layer count before any weight is looked up, so a
  // corrupt count (config.json's num_hidden_layers, GGUF's block_count) is refused rather than
  // becoming a billion-step loop; the largest real models have under 200 layers.
  static constexpr int kMaxLayers = 4096;

  std::string model_type;  // as written in config.json ("llama", "qwen2", "gemma3_text", ...)
  Arch arch = Arch::Llama;
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int max_position_embeddings = 2048;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections carry biases (Qwen2)
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;

  // Gemma 3 only.
  int sliding_window = 0;               // 0: every layer is global
  std::vector<bool> layer_is_sliding;   // per layer; empty means none
  float rope_local_theta = 10000.0f;    // RoPE base of the sliding-window layers
  float query_pre_attn_scalar = 0.0f;   // attention scale is 1/sqrt(this); 0 means head_dim
  float final_logit_softcap = 0.0f;     // 0: off
  float attn_logit_softcap = 0.0f;      // 0: off

  int q_dim() const { return num_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }
  bool is_sliding(int layer) const {
    return layer < static_cast<int>(layer_is_sliding.size()) && layer_is_sliding[layer];
  }
  // Throws ConfigError when a field is missing, non-positive or inconsistent.
  void validate() const;
};

// Parses a Hugging Face config.json object. Throws ConfigError naming the offending field.
ModelConfig parse_hf_config(const nlohmann::json& j);
// Reads DIR/config.json (and DIR/generation_config.json for eos ids when present).
ModelConfig load_hf_config(const std::filesystem::path& dir);

}  // namespace xq
