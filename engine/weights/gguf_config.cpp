// ModelConfig from GGUF metadata. llama.cpp writes hyper-parameters as "{arch}.<key>"; what it
// hard-codes per architecture instead of storing (Gemma 3's layer pattern, local RoPE base and
// attention scale) is filled in here the same way.
#include <cmath>
#include <string>

#include "engine/weights/gguf_weights.h"

namespace xq {
namespace {

// Typed metadata reads that report a missing or out-of-range key as a ConfigError.
class Meta {
 public:
  Meta(const GgufFile& f, std::string arch) : f_(f), arch_(std::move(arch)) {}

  std::string key(const std::string& k) const { return arch_ + "." + k; }

  int require_int(const std::string& k) const {
    std::optional<int64_t> v = f_.get_int(key(k));
    if (!v) throw ConfigError(where() + "metadata " + key(k) + " is missing");
    return checked(k, *v);
  }
  int get_int(const std::string& k, int fallback) const {
    std::optional<int64_t> v = f_.get_int(key(k));
    return v ? checked(k, *v) : fallback;
  }
  float get_float(const std::string& k, float fallback) const {
    std::optional<double> v = f_.get_float(key(k));
    return v ? static_cast<float>(*v) : fallback;
  }
  std::string where() const { return f_.path().string() + ": "; }

 private:
  int checked(const std::string& k, int64_t v) const {
    if (v < 0 || v > (int64_t{1} << 30)) {
      throw ConfigError(where() + "metadata " + key(k) + " = " + std::to_string(v) +
                        " is out of range");
    }
    return static_cast<int>(v);
  }

  const GgufFile& f_;
  std::string arch_;
};

void read_rope_scaling(const GgufFile& f, const Meta& m, ModelConfig& c) {
  std::optional<std::string> type = f.get_string(m.key("rope.scaling.type"));
  if (type && *type != "none") {
    if (*type != "linear") {
      throw ConfigError(m.where() + "metadata " + m.key("rope.scaling.type") + " is '" + *type +
                        "' (supported: none, linear)");
    }
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = m.get_float("rope.scaling.factor", 1.0f);
  }
  // Llama 3.1-style scaling is stored as a tensor of per-frequency factors, from which the
  // rope_scaling parameters of config.json cannot be recovered exactly.
  if (f.find_tensor("rope_freqs.weight")) {
    throw ConfigError(m.where() +
                      "tensor rope_freqs.weight (llama3 RoPE frequency factors) is "
                      "not supported; use the Hugging Face checkpoint");
  }
}

void read_token_ids(const GgufFile& f, ModelConfig& c) {
  if (auto bos = f.get_int("tokenizer.ggml.bos_token_id")) c.bos_token_id = static_cast<int>(*bos);
  auto add_eos = [&c](int64_t id) {
    for (int e : c.eos_token_ids) {
      if (e == id) return;
    }
    c.eos_token_ids.push_back(static_cast<int>(id));
  };
  for (const char* k : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                        "tokenizer.ggml.eom_token_id"}) {
    if (auto id = f.get_int(k)) add_eos(*id);
  }
  // A GGUF keeps one end-of-sequence id (the converter takes tokenizer_config's eos_token),
  // while generation_config.json may list several: Llama 3.1 stops at <|end_of_text|>,
  // <|eom_id|> and <|eot_id|>, Qwen2 at <|im_end|> and <|endoftext|>, Gemma at <eos> and
  // <end_of_turn>. llama.cpp restores them by these token texts, and so do we, after the
  // file's own ids so that the first stays the chat template's eos_token.
  static constexpr const char* kEndOfGeneration[] = {
      "<|eot_id|>",    "<|eom_id|>", "<|end_of_text|>", "<|im_end|>",
      "<|endoftext|>", "<|end|>",    "<end_of_turn>"};
  if (const GgufValue* tokens = f.find("tokenizer.ggml.tokens")) {
    for (size_t i = 0; i < tokens->strings.size(); ++i) {
      for (const char* end : kEndOfGeneration) {
        if (tokens->strings[i] == end) add_eos(static_cast<int64_t>(i));
      }
    }
  }
}

}  // namespace

ModelConfig gguf_model_config(const GgufFile& f) {
  const std::string arch = f.require_string("general.architecture");
  const Meta m(f, arch);
  ModelConfig c;
  if (arch == "gemma3") {
    c.model_type = "gemma3_text";
    c.arch = Arch::Gemma3;
  } else if (arch == "llama" || arch == "qwen2" || arch == "qwen3") {
    c.model_type = arch;
    c.arch = Arch::Llama;
  } else {
    throw ConfigError(m.where() + "architecture " + arch +
                      " is not supported (llama, qwen2, qwen3 and gemma3 are)");
  }

  c.hidden_size = m.require_int("embedding_length");
  c.intermediate_size = m.require_int("feed_forward_length");
  c.num_layers = m.require_int("block_count");
  // Per-layer tables are built from it before any tensor is looked up: a corrupt count must not
  // become a billion-entry loop.
  if (c.num_layers < 1 || c.num_layers > ModelConfig::kMaxLayers)
    throw ConfigError(m.where() + "block_count " + std::to_string(c.num_layers) +
                      " is out of range (1 to " + std::to_string(ModelConfig::kMaxLayers) + ")");
  c.num_heads = m.require_int("attention.head_count");
  c.num_kv_heads = m.get_int("attention.head_count_kv", c.num_heads);
  c.head_dim = m.get_int("attention.key_length", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
  if (m.get_int("attention.value_length", c.head_dim) != c.head_dim) {
    throw ConfigError(m.where() + "metadata " + m.key("attention.value_length") +
                      " differs from the key length; the engine needs them equal");
  }
  c.max_position_embeddings = m.get_int("context_length", c.max_position_embeddings);
  c.rms_norm_eps = m.get_float("attention.layer_norm_rms_epsilon", c.rms_norm_eps);
  c.rope_theta = m.get_float("rope.freq_base", arch == "gemma3" ? 1000000.0f : 10000.0f);
  read_rope_scaling(f, m, c);

  const GgufTensor* embd = f.find_tensor("token_embd.weight");
  if (!embd || embd->ne.size() != 2) {
    throw ConfigError(m.where() + "tensor token_embd.weight is missing or not 2-D");
  }
  c.vocab_size = static_cast<int>(embd->ne[1]);
  c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  c.attention_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;

  if (arch == "gemma3") {
    // llama.cpp (llm_arch GEMMA3): every 6th layer is global, the others use the sliding
    // window with RoPE base 10000; HF's gemma-3 configs say the same through layer_types and
    // rope_local_base_freq.
    c.sliding_window = m.get_int("attention.sliding_window", 0);
    for (int i = 0; i < c.num_layers; ++i) c.layer_is_sliding.push_back(i % 6 < 5);
    c.rope_local_theta = 10000.0f;
    // Scores are scaled by 1/sqrt(query_pre_attn_scalar): the head size, except for the 27B
    // model (62 layers) whose HF config sets hidden_size / num_heads (168).
    c.query_pre_attn_scalar = c.num_layers == 62 ? static_cast<float>(c.hidden_size / c.num_heads)
                                                 : static_cast<float>(c.head_dim);
    c.final_logit_softcap = m.get_float("final_logit_softcapping", 0.0f);
    c.attn_logit_softcap = m.get_float("attn_logit_softcapping", 0.0f);
  } else {
    c.sliding_window = m.get_int("attention.sliding_window", 0);
  }
  read_token_ids(f, c);
  try {
    c.validate();
  } catch (const ConfigError& e) {
    throw ConfigError(m.where() + e.what());
  }
  return c;
}

}  // namespace xq
