#include "engine/cache/layer_attention.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/parallel.h"

namespace xq {

float attention_scale(const ModelConfig& cfg) {
  const float d = cfg.query_pre_attn_scalar > 0.0f ? cfg.query_pre_attn_scalar
                                                   : static_cast<float>(cfg.head_dim);
  return 1.0f / std::sqrt(d);
}

int window_start(const ModelConfig& cfg, int layer, int pos) {
  if (!cfg.is_sliding(layer) || cfg.sliding_window <= 0) return 0;
  return std::max(0, pos - cfg.sliding_window + 1);
}

void check_truncate(const ModelConfig& cfg, int n, int tokens) {
  if (n == 0 || n >= tokens) return;
  for (int l = 0; l < cfg.num_layers; ++l) {
    if (window_start(cfg, l, tokens) > 0) {
      throw std::logic_error("cache: cannot cut " + std::to_string(tokens) + " tokens back to " +
                             std::to_string(n) + ": sliding-window layer " + std::to_string(l) +
                             " has forgotten the rows before its window (only 0 works)");
    }
  }
}

void causal_attention(const ModelConfig& cfg, int layer, const float* q, int n, int start_pos,
                      const float* k, const float* v, float* out, int first_pos) {
  const int hd = cfg.head_dim, heads = cfg.num_heads, kv_dim = cfg.kv_dim();
  const int group = cfg.num_heads / cfg.num_kv_heads;
  const float scale = attention_scale(cfg);
  const int total = start_pos + n;
  // One task per (token, head); long contexts make each worth a thread.
  const int min_chunk = std::max(1, 65536 / std::max(1, total * hd));
  parallel_for(n * heads, hardware_threads(), min_chunk, [&](int begin, int end) {
    std::vector<float> scratch(total);
    for (int t = begin; t < end; ++t) {
      const int i = t / heads, h = t % heads;
      const int pos = start_pos + i;
      const int lo = window_start(cfg, layer, pos);
      if (lo < first_pos) throw std::invalid_argument("causal_attention: rows before the window");
      const size_t kv_off = static_cast<size_t>(lo - first_pos) * kv_dim + (h / group) * hd;
      attend_query(q + static_cast<size_t>(i) * heads * hd + h * hd, k + kv_off, kv_dim, v + kv_off,
                   kv_dim, pos + 1 - lo, hd, scale, cfg.attn_logit_softcap,
                   out + static_cast<size_t>(i) * heads * hd + h * hd, scratch.data());
    }
  });
}

}  // namespace xq
