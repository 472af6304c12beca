// The attention of one layer's new tokens over fp32 K/V rows, with the model's masking rules
// (causal, sliding window), scale and logit soft-capping: what every cache format ends with.
#pragma once

#include "config/model_config.h"

namespace xq {

// The attention scale of `cfg`: 1/sqrt(query_pre_attn_scalar) when set (Gemma), else
// 1/sqrt(head_dim).
float attention_scale(const ModelConfig& cfg);

// q: [n, num_heads * head_dim] for the new tokens at positions [start_pos, start_pos + n).
// k, v: [start_pos + n - first_pos, kv_dim] rows for every position from first_pos up to the
// last new token (row r is position first_pos + r). Writes out: [n, num_heads * head_dim].
// Query head h reads kv head h / (num_heads / num_kv_heads); sliding layers see only the last
// cfg.sliding_window positions (the query's own included), so first_pos may be as late as
// window_start(cfg, layer, start_pos).
void causal_attention(const ModelConfig& cfg, int layer, const float* q, int n, int start_pos,
                      const float* k, const float* v, float* out, int first_pos = 0);

// The first position a query at `pos` can see in `layer` (0 unless the layer slides).
int window_start(const ModelConfig& cfg, int layer, int pos);

// Throws std::logic_error when a sequence of `tokens` tokens cannot be cut back to n: its
// sliding-window layers already forgot rows the token at n would see (any 0 < n < tokens once
// tokens reach the window). n = 0 always works.
void check_truncate(const ModelConfig& cfg, int n, int tokens);

}  // namespace xq
