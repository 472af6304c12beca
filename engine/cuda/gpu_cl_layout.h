// XQuant-CL's shape on the GPU, decided on the host: which layer each layer's delta is taken
// against, which chain's accumulator it extends, whether it is cached on its basis of [Wk; Wv]
// (the GQA latent form), and where the accumulator rows of a step's workspace groups live.
// No CUDA in here, so the CPU build tests it against the CPU format (xquant_cl_cache.h).
#pragma once

#include <vector>

#include "engine/cache/cache_format.h"

namespace xq::cuda {

struct GpuCacheLayout;

// Per layer, as the CPU's ClPlan (xquant_cl_cache.cpp) has it.
struct ClShape {
  std::vector<int> prev;       // the layer its delta is taken against; -1: it starts a chain
  std::vector<int> chain;      // the accumulator it extends: 0 (global layers), 1 (sliding ones)
  std::vector<char> on_basis;  // cached as rows on Ukv_l (2 kv_dim wide) instead of X-wide
  bool residual = false;       // deltas on the pre-norm residual stream, not the normed X
  bool latent = false;         // some layer is on its basis: the weights carry Ukv per layer
  int chains = 1;
  // The -ch forms: deltas in per-channel blocks of G tokens (the layout's channel segments;
  // 16-bit layers as per-token fp16 rows), each layer's newest < G rows of S waiting in the
  // sequence's window slot at window_offset[l], window_value_bytes a value (2: fp16 X, 4: the
  // fp32 residual stream, as the CPU keeps them).
  bool per_channel = false;
  std::vector<size_t> window_offset;
  int window_value_bytes = 0;
  std::vector<int> bits;  // per layer: its deltas' (or base's) bits
};

// Fills `out` (kind XQuantCL, name as the CPU format's, per layer one row segment or (-ch forms
// below 16 bits) one per-channel segment at the layer's bits and width, the -ch forms' windows
// and window_bytes_max, the ClShape) for the xquant-cl forms. Throws ConfigError naming the
// flag for what the GPU does not run (a -ch form without its fp16 window, or with a group size
// its per-channel blocks cannot tile pages with) or what the CPU refuses too.
void fill_cl_layout(const ModelConfig& cfg, const CacheOptions& opts, GpuCacheLayout& out);

// Layer l's bytes per token as the CPU format counts them (its row, or its share of a block).
double cl_layer_bytes(const GpuCacheLayout& out, int l);

// Where each workspace group of a step keeps its accumulator rows: groups in order get their
// own rows while they fit `capacity` (then the accumulator persists from layer to layer); when
// not all fit, the groups that do not share the last `max_group_rows` rows and rebuild their
// accumulator from the cached chain at every layer (correct, slower).
struct ClGroupRows {
  int offset = 0;         // first accumulator row
  bool resident = false;  // holds its accumulator across layers
};
// group_rows: each group's workspace rows; capacity >= the largest of them.
std::vector<ClGroupRows> place_cl_groups(const std::vector<int>& group_rows, int capacity);

}  // namespace xq::cuda
