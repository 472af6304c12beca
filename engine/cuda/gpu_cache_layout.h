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
#include "kernels/cuda/channel_layout.h"
#include "kernels/cuda/row_layout.h"

namespace xq::cuda {

// XQuantCL: cross-layer deltas (X-wide or on each layer's basis of [Wk; Wv]; per token, or per
// channel in blocks of G tokens for the -ch forms), rebuilt into
// X-wide rows through an accumulator (engine/cuda/cl_accumulator.h). Kivi: K per channel in
// blocks of G tokens, V per token (the row is [K | V], 2 kv_dim wide).
enum class GpuCacheKind { Kv16, XQuant, XLatent, XQuantCL, Kivi };

// Columns [col, col + layout.width) of the row a layer caches (X, or [X U_k, X U_v]) stored in
// `layout`. A page's layer part holds its segments one after the other, kPageRows rows each:
// segment s's row `slot` at offset + slot * layout.bytes().
struct RowSegment {
  int col = 0;
  QuantRowLayout layout;
  size_t offset = 0;
};

// Columns [col, col + layout.width) of the row in per-channel blocks (kernels/cuda/
// channel_layout.h), at `offset` in the layer's part of a page after its row segments; the
// unfilled block's rows wait in fp16 at window_offset of the sequence's window slot (G rows).
struct ChannelSegment {
  int col = 0;
  ChannelBlockLayout layout;
  size_t offset = 0;
  size_t window_offset = 0;
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
  // Per layer: its columns in per-channel blocks (none for most formats and 16-bit layers).
  std::vector<std::vector<ChannelSegment>> channel;
  // KIVI with its fp16 window: per layer, where the last G values (a ring, position p at row
  // p % G) sit in a window slot. Empty otherwise.
  std::vector<size_t> value_window;
  int group = 0;                 // G
  bool fp16_window = true;       // false: the unfilled block is read quantized as a partial block
  size_t window_slot_bytes = 0;  // one sequence's fp16 windows, all layers (0: no slots)
  // What the CPU format reports (and the scheduler keeps aside per sequence): the windows'
  // bytes beyond the per-token bytes of their tokens, which the pages already hold.
  double window_bytes_max = 0;
  // layer_offset[l]: the page bytes of layers [0, l), for l in [0, layers]. The pool keeps each
  // layer's parts of all pages together: layer l's part of page p at
  // pages * layer_offset[l] + p * page_bytes(l).
  std::vector<size_t> layer_offset;
  ClShape cl;  // XQuantCL only
  // The sliding-window ring (engine/cuda/sliding_ring.h): a sequence holds at most ring_pages
  // pages of the layers in_ring marks, in a pool of their own, for steps of at most
  // ring_step_rows new rows per sequence; ring_pages 0: no ring, every layer keeps every row.
  int ring_pages = 0;
  int ring_step_rows = 0;
  std::vector<bool> in_ring;

  bool ring_layer(int layer) const { return ring_pages > 0 && in_ring[layer]; }
  // A page's bytes over the layers of the one pool (all of them without a ring), and over the
  // ring's layers.
  size_t global_page_bytes() const;
  size_t ring_page_bytes() const;
  // Where layer l's part of the pages starts in a pool of `pages` global pages followed by
  // `ring_pages` ring pages: each pool keeps each of its layers' parts of all its pages together.
  size_t pool_begin(int layer, int64_t pages, int64_t ring_pages) const;

  int layers() const { return static_cast<int>(layer_offset.size()) - 1; }
  size_t page_bytes(int layer) const { return layer_offset[layer + 1] - layer_offset[layer]; }
  size_t page_bytes_all_layers() const { return layer_offset.back(); }
  size_t layer_begin(int layer, int64_t pages) const {
    return static_cast<size_t>(pages) * layer_offset[layer];
  }
  // Whether every layer caches one quantized row (what the fused decode kernel reads).
  bool single_segment() const;
  bool has_channel_blocks() const { return window_slot_bytes > 0; }
};

// Throws ConfigError, naming the flag, for a format or setting the GPU does not run.
GpuCacheLayout gpu_cache_layout(const ModelConfig& cfg, const CacheOptions& opts);

}  // namespace xq::cuda
