// ModelConfig::validate: the consistency checks every source of a config (HF or GGUF) must pass.
#include <string>

#include "config/model_config.h"

namespace xq {
namespace {

// Field names follow config.json, since that is what a user would go and fix.
template <typename T>
void require_positive(const char* field, T v) {
  if (!(v > 0)) {
    throw ConfigError("field '" + std::string(field) + "' must be positive, got " +
                      std::to_string(v));
  }
}

void require_token(const char* field, int id, int vocab_size) {
  if (id < 0 || id >= vocab_size) {
    throw ConfigError("field '" + std::string(field) + "' has token id " + std::to_string(id) +
                      " outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
  }
}

}  // namespace

void ModelConfig::validate() const {
  require_positive("vocab_size", vocab_size);
  require_positive("hidden_size", hidden_size);
  require_positive("intermediate_size", intermediate_size);
  require_positive("num_hidden_layers", num_layers);
  require_positive("num_attention_heads", num_heads);
  require_positive("num_key_value_heads", num_kv_heads);
  require_positive("head_dim", head_dim);
  require_positive("max_position_embeddings", max_position_embeddings);
  require_positive("rms_norm_eps", rms_norm_eps);
  require_positive("rope_theta", rope_theta);
  if (num_heads % num_kv_heads != 0) {
    throw ConfigError("field 'num_attention_heads' (" + std::to_string(num_heads) +
                      ") must be a multiple of 'num_key_value_heads' (" +
                      std::to_string(num_kv_heads) + ")");
  }
  if (head_dim % 2 != 0) {
    throw ConfigError("field 'head_dim' must be even for RoPE, got " + std::to_string(head_dim));
  }
  if (rope_scaling.type != "none" && rope_scaling.type != "linear" &&
      rope_scaling.type != "llama3") {
    throw ConfigError("field 'rope_scaling.rope_type' is '" + rope_scaling.type +
                      "' (supported: linear, llama3)");
  }
  if (rope_scaling.type != "none") require_positive("rope_scaling.factor", rope_scaling.factor);
  if (rope_scaling.type == "llama3") {
    require_positive("rope_scaling.original_max_position_embeddings",
                     rope_scaling.original_max_position);
    require_positive("rope_scaling.low_freq_factor", rope_scaling.low_freq_factor);
    if (!(rope_scaling.high_freq_factor > rope_scaling.low_freq_factor)) {
      throw ConfigError(
          "field 'rope_scaling.high_freq_factor' must exceed 'rope_scaling.low_freq_factor'");
    }
  }
  if (sliding_window < 0) {
    throw ConfigError("field 'sliding_window' must not be negative, got " +
                      std::to_string(sliding_window));
  }
  if (!layer_is_sliding.empty()) {
    if (static_cast<int>(layer_is_sliding.size()) != num_layers) {
      throw ConfigError("field 'layer_types' has " + std::to_string(layer_is_sliding.size()) +
                        " entries but 'num_hidden_layers' is " + std::to_string(num_layers));
    }
    for (bool s : layer_is_sliding) {
      if (s) {
        require_positive("sliding_window", sliding_window);
        break;
      }
    }
  }
  if (arch == Arch::Gemma3) require_positive("rope_local_base_freq", rope_local_theta);
  if (query_pre_attn_scalar < 0) {
    throw ConfigError("field 'query_pre_attn_scalar' must not be negative");
  }
  if (final_logit_softcap < 0) {
    throw ConfigError("field 'final_logit_softcapping' must not be negative");
  }
  if (attn_logit_softcap < 0) {
    throw ConfigError("field 'attn_logit_softcapping' must not be negative");
  }
  if (bos_token_id != -1) require_token("bos_token_id", bos_token_id, vocab_size);
  for (int id : eos_token_ids) require_token("eos_token_id", id, vocab_size);
}

}  // namespace xq
