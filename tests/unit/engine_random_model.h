// A tiny transformer with random weights held in memory (Llama or Gemma 3 layout), for the
// engine's model tests: the CPU model's own tests and the CUDA model's comparison with it.
#pragma once

#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "config/model_config.h"
#include "engine/weights/weight_source.h"

namespace xq {

// A WeightSource over fp32 tensors held in memory.
class MemoryWeights : public WeightSource {
 public:
  void add(const std::string& name, std::vector<int64_t> shape, std::vector<float> data) {
    Entry& e = tensors_[name];
    e.data = std::move(data);
    e.info.name = name;
    e.info.dtype = DType::F32;
    e.info.shape = std::move(shape);
    e.info.data = reinterpret_cast<const uint8_t*>(e.data.data());
    e.info.nbytes = e.data.size() * sizeof(float);
    e.info.file = "memory";
  }
  void remove(const std::string& name) { tensors_.erase(name); }
  const TensorInfo* find(const std::string& name) const override {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second.info;
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (const auto& [n, e] : tensors_) out.push_back(n);
    return out;
  }

 private:
  struct Entry {
    TensorInfo info;
    std::vector<float> data;
  };
  std::map<std::string, Entry> tensors_;
};

inline ModelConfig tiny_config(Arch arch) {
  ModelConfig c;
  c.arch = arch;
  c.model_type = arch == Arch::Gemma3 ? "gemma3_text" : "llama";
  c.vocab_size = 97;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.rms_norm_eps = 1e-6f;
  c.attention_bias = arch == Arch::Llama;
  if (arch == Arch::Gemma3) {
    c.sliding_window = 4;
    c.layer_is_sliding = {true, true};
    c.query_pre_attn_scalar = 8.0f;
    c.final_logit_softcap = 30.0f;
    c.attn_logit_softcap = 50.0f;
    c.tie_word_embeddings = true;
  }
  return c;
}

// `bf16`: every weight rounded to bf16, so an engine holding bf16 weights holds exactly these.
// `qk_scale`: the spread of Wq and Wk; large values make attention nearly one-hot, where any
// rounding of q or k moves the output a lot.
inline MemoryWeights random_weights(const ModelConfig& c, unsigned seed, bool bf16 = false,
                                    float qk_scale = 0.3f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  MemoryWeights w;
  auto t = [&](const std::string& name, std::vector<int64_t> shape, float scale, float mean) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(n);
    for (float& x : v) x = mean + scale * nd(rng);
    if (bf16) {
      for (float& x : v) {  // round to nearest even at bf16 (no NaNs here)
        uint32_t u;
        std::memcpy(&u, &x, 4);
        u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
        std::memcpy(&x, &u, 4);
      }
    }
    w.add(name, std::move(shape), std::move(v));
  };
  const int64_t H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim();
  const bool gemma = c.arch == Arch::Gemma3;
  const float norm_mean = gemma ? 0.0f : 1.0f;  // Gemma norms multiply by (1 + w)
  t("model.embed_tokens.weight", {c.vocab_size, H}, 1.0f, 0.0f);
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t(p + "input_layernorm.weight", {H}, 0.1f, norm_mean);
    t(p + "self_attn.q_proj.weight", {Q, H}, qk_scale, 0.0f);
    t(p + "self_attn.k_proj.weight", {KV, H}, qk_scale, 0.0f);
    t(p + "self_attn.v_proj.weight", {KV, H}, 0.3f, 0.0f);
    t(p + "self_attn.o_proj.weight", {H, Q}, 0.2f, 0.0f);
    if (c.attention_bias) {
      t(p + "self_attn.q_proj.bias", {Q}, 0.1f, 0.0f);
      t(p + "self_attn.k_proj.bias", {KV}, 0.1f, 0.0f);
      t(p + "self_attn.v_proj.bias", {KV}, 0.1f, 0.0f);
    }
    t(p + "mlp.gate_proj.weight", {I, H}, 0.2f, 0.0f);
    t(p + "mlp.up_proj.weight", {I, H}, 0.2f, 0.0f);
    t(p + "mlp.down_proj.weight", {H, I}, 0.2f, 0.0f);
    if (gemma) {
      t(p + "self_attn.q_norm.weight", {c.head_dim}, 0.1f, 0.0f);
      t(p + "self_attn.k_norm.weight", {c.head_dim}, 0.1f, 0.0f);
      t(p + "post_attention_layernorm.weight", {H}, 0.1f, 0.0f);
      t(p + "pre_feedforward_layernorm.weight", {H}, 0.1f, 0.0f);
      t(p + "post_feedforward_layernorm.weight", {H}, 0.1f, 0.0f);
    } else {
      t(p + "post_attention_layernorm.weight", {H}, 0.1f, 1.0f);
    }
  }
  t("model.norm.weight", {H}, 0.1f, norm_mean);
  if (!c.tie_word_embeddings) t("lm_head.weight", {c.vocab_size, H}, 0.2f, 0.0f);
  return w;
}

inline std::vector<int> tokens(int n, int seed, int vocab) {
  std::vector<int> t(n);
  for (int i = 0; i < n; ++i) t[i] = (seed * 31 + i * 17 + i * i * 7) % vocab;
  return t;
}

// n values from N(0, 1).
inline std::vector<float> gaussian(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

}  // namespace xq
