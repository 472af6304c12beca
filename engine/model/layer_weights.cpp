#include "engine/model/layer_weights.h"

#include <string>

namespace xq {
namespace {

size_t floats(const std::vector<float>& v) { return v.size(); }

}  // namespace

size_t ModelWeights::bytes() const {
  size_t n = floats(embed) + floats(final_norm) + floats(lm_head);
  for (const LayerWeights& l : layers) {
    for (const auto* v : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv, &l.bo,
                          &l.q_norm, &l.k_norm, &l.post_attn_norm, &l.mlp_norm, &l.post_mlp_norm,
                          &l.w_gate, &l.w_up, &l.w_down}) {
      n += v->size();
    }
  }
  return n * sizeof(float);
}

LayerWeights load_layer_weights(const ModelConfig& cfg, const WeightSource& src, int l) {
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size;
  const int64_t Q = cfg.q_dim(), KV = cfg.kv_dim(), D = cfg.head_dim;
  const bool gemma = cfg.arch == Arch::Gemma3;
  const std::string p = "model.layers." + std::to_string(l) + ".";
  auto load = [&](const std::string& name, std::vector<int64_t> shape) {
    return src.load_f32(p + name, shape);
  };
  auto optional = [&](const std::string& name, std::vector<int64_t> shape) {
    return src.has(p + name) ? src.load_f32(p + name, shape) : std::vector<float>{};
  };
  LayerWeights L;
  L.attn_norm = load("input_layernorm.weight", {H});
  L.wq = load("self_attn.q_proj.weight", {Q, H});
  L.wk = load("self_attn.k_proj.weight", {KV, H});
  L.wv = load("self_attn.v_proj.weight", {KV, H});
  L.wo = load("self_attn.o_proj.weight", {H, Q});
  if (cfg.attention_bias) {
    L.bq = load("self_attn.q_proj.bias", {Q});
    L.bk = load("self_attn.k_proj.bias", {KV});
    L.bv = load("self_attn.v_proj.bias", {KV});
  }
  // Llama with attention_bias also biases o_proj; Qwen2 does not: take it when present.
  L.bo = optional("self_attn.o_proj.bias", {H});
  if (gemma) {
    L.q_norm = load("self_attn.q_norm.weight", {D});
    L.k_norm = load("self_attn.k_norm.weight", {D});
    L.post_attn_norm = load("post_attention_layernorm.weight", {H});
    L.mlp_norm = load("pre_feedforward_layernorm.weight", {H});
    L.post_mlp_norm = load("post_feedforward_layernorm.weight", {H});
  } else if (cfg.model_type == "qwen3") {  // RMSNorm of each q/k head before RoPE
    L.q_norm = load("self_attn.q_norm.weight", {D});
    L.k_norm = load("self_attn.k_norm.weight", {D});
    L.mlp_norm = load("post_attention_layernorm.weight", {H});
  } else {
    L.q_norm = optional("self_attn.q_norm.weight", {D});  // when a Llama-style export has them
    L.k_norm = optional("self_attn.k_norm.weight", {D});
    L.mlp_norm = load("post_attention_layernorm.weight", {H});
  }
  L.w_gate = load("mlp.gate_proj.weight", {I, H});
  L.w_up = load("mlp.up_proj.weight", {I, H});
  L.w_down = load("mlp.down_proj.weight", {H, I});
  return L;
}

ModelWeights load_model_weights(const ModelConfig& cfg, const WeightSource& src) {
  const int64_t H = cfg.hidden_size, V = cfg.vocab_size;
  ModelWeights w;
  w.embed = src.load_f32("model.embed_tokens.weight", {V, H});
  w.layers.reserve(cfg.num_layers);
  for (int l = 0; l < cfg.num_layers; ++l) w.layers.push_back(load_layer_weights(cfg, src, l));
  w.final_norm = src.load_f32("model.norm.weight", {H});
  if (!cfg.tie_word_embeddings) w.lm_head = src.load_f32("lm_head.weight", {V, H});
  return w;
}

}  // namespace xq
