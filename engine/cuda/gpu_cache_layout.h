// The GPU cache's shape, decided on the host from the cache options: which format, each layer's
// cached row (as segments of quantized rows) and where each layer's part of a page sits in the
// pool. No CUDA in here, so the CPU build tests the arithmetic (tests/unit/
// engine_gpu_cache_layout_test.cpp) against the CPU formats' bytes per token.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/cache/cache_format.h"
#include "engine/cuda/gpu_cl_layout.h"
#include "kernels/cuda/row_layout.h"

namespace xq::cuda {

// XQuantCL: cross-layer deltas (X-wide or on each layer's basis of [Wk; Wv]), rebuilt into
// X-wide rows through an accumulator (engine/cuda/cl_accumulator.h).
enum class GpuCacheKind { Kv16, XQuant, XLatent, XQuantCL };

// Columns [col, col + layout.width) of the row a layer caches (X, or [X U_k, X U_v]) stored in
// `layout`. A page's layer part holds its segments one after the other, kPageRows rows each:
// segment s's row `slot` at offset + slot * layout.bytes().
struct RowSegment {
  int col = 0;
  QuantRowLayout layout;
  size_t offset = 0;
};

struct GpuCacheLayout {
  GpuCacheKind kind = GpuCacheKind::Kv16;
  std::string name;  // as the CPU's format names itself ("xquant:4", "xquant-latent-tok:2")
  // The cached row: hidden_size (X), 2 kv_dim (latent); 0 for Kv16. XQuantCL: hidden_size, the
  // rebuilt row (each layer's stored width is its segment's).
  int row_width = 0;
  int k_fp16_channels = 0;  // the K latent's first channels kept in fp16
  // Per layer: its row's segments (empty for Kv16, one where the row is one quantized row).
  std::vector<std::vector<RowSegment>> segments;
  // layer_offset[l]: the page bytes of layers [0, l), for l in [0, layers]. The pool keeps each
  // layer's parts of all pages together: layer l's part of page p at
  // pages * layer_offset[l] + p * page_bytes(l).
  std::vector<size_t> layer_offset;
  ClShape cl;  // XQuantCL only

  int layers() const { return static_cast<int>(layer_offset.size()) - 1; }
  size_t page_bytes(int layer) const { return layer_offset[layer + 1] - layer_offset[layer]; }
  size_t page_bytes_all_layers() const { return layer_offset.back(); }
  size_t layer_begin(int layer, int64_t pages) const {
    return static_cast<size_t>(pages) * layer_offset[layer];
  }
  // Whether every layer caches one quantized row (what the fused decode kernel reads).
  bool single_segment() const;
};

// Throws ConfigError, naming the flag, for a format or setting the GPU does not run.
GpuCacheLayout gpu_cache_layout(const ModelConfig& cfg, const CacheOptions& opts);

}  // namespace xq::cuda
