// The fp32 weights of the CPU model, loaded by Hugging Face tensor names.
#pragma once

#include <vector>

#include "config/model_config.h"
#include "engine/weights/weight_source.h"

namespace xq {

// One decoder layer. Empty vectors are absent tensors (biases, Gemma's extra norms, q/k norms).
struct LayerWeights {
  std::vector<float> attn_norm;       // input_layernorm [hidden]
  std::vector<float> wq, wk, wv, wo;  // [q_dim, hidden], [kv_dim, hidden] x2, [hidden, q_dim]
  std::vector<float> bq, bk, bv, bo;
  std::vector<float> q_norm, k_norm;        // [head_dim] (Gemma 3, Qwen 3)
  std::vector<float> post_attn_norm;        // Gemma 3: applied to the attention output
  std::vector<float> mlp_norm;              // Llama: post_attention_layernorm; Gemma 3:
                                            // pre_feedforward_layernorm
  std::vector<float> post_mlp_norm;         // Gemma 3: post_feedforward_layernorm
  std::vector<float> w_gate, w_up, w_down;  // [inter, hidden] x2, [hidden, inter]
};

struct ModelWeights {
  std::vector<float> embed;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;
  std::vector<float> lm_head;  // [vocab, hidden]; empty when tied to `embed`
  size_t bytes() const;
};

// Throws WeightError (from the source) naming the tensor that is missing or mis-shaped.
// One layer's tensors (a device backend uploads layer by layer instead of holding them all).
LayerWeights load_layer_weights(const ModelConfig& cfg, const WeightSource& src, int layer);
ModelWeights load_model_weights(const ModelConfig& cfg, const WeightSource& src);

}  // namespace xq
