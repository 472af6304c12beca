// Attention for formats that cache layer inputs X (or a latent of X) instead of K/V: K of the
// past rematerialized through the projector, and V either rematerialized too or folded after the
// softmax: out_h = (sum_j p_j x_j) Wv_h + (sum_j p_j) b_h, exact since V is affine in x.
#pragma once

#include <vector>

#include "config/model_config.h"
#include "engine/cache/cache_format.h"
#include "engine/cache/layer_attention.h"

namespace xq {

// Rows [rows, hidden] = z [rows, width] . basis [width, hidden] (the latent back in X space).
void lift_rows(const float* z, int rows, int width, const float* basis, int hidden, float* out);
// z [rows, width] = x [rows, hidden] . basis^T (X onto the latent basis).
void project_rows(const float* x, int rows, int hidden, const float* basis, int width, float* z);

// Writes K rows [lo, past) of `k` ([.., kv_dim], row p = position p) from inputs x, where x
// holds rows [lo, past) at the same row index ([.., hidden]).
void remat_keys(const KvProjector& proj, int layer, const float* x, int hidden, int lo, int past,
                int kv_dim, float* k);

// The attention of in's new tokens with the past's V folded. k: [past + n, kv_dim] with the past
// rows from window_start(.., past) on rematerialized and the new tokens' own rows after them.
// xs: [past, width] the cached past inputs (rows before the window unused); `lift` ([width,
// hidden]) maps them to X space first when they are a latent, nullptr when width == hidden.
// The new tokens' values come from in.v, in full precision.
void folded_attention(const ModelConfig& cfg, const KvProjector& proj, const LayerAttnInput& in,
                      const float* k, const float* xs, int width, const float* lift);

// The same attention with V rematerialized: v rows [lo, past) = values(x) of the past (x in X
// space, rows as in remat_keys), then the new tokens' own K/V and the model's causal attention.
// k: as for folded_attention; v: scratch of [past + n, kv_dim].
void remat_attention(const ModelConfig& cfg, const KvProjector& proj, const LayerAttnInput& in,
                     const float* x, float* k, float* v);

// The whole attention of in's new tokens over past inputs xs in X space ([past, hidden], rows
// from window_start(.., past) on): K rematerialized, V folded (fold) or rematerialized. k and v
// are scratch.
void attend_over_inputs(const ModelConfig& cfg, const KvProjector& proj, const LayerAttnInput& in,
                        const float* xs, bool fold, std::vector<float>& k, std::vector<float>& v);

}  // namespace xq
