// The cache formats the CUDA engine runs, in one pool of pages on the device: fp16 K/V (the
// baseline), XQuant's X in per-token groups (2/3/4/8 bits, or fp16 at 16) or per-channel blocks
// of G tokens (xquant-ch), and for GQA models X on the SVD latents of Wk and Wv (X U_k and X U_v
// side by side in one row; the V latent per token, the K latent per token or per channel, with
// its first channels in fp16 if asked), KIVI (K per channel, V per token), and XQuant-CL's
// cross-layer deltas per token or (-ch) per channel in blocks of G tokens, X-wide or on each
// layer's basis of [Wk; Wv], rebuilt through an fp32 accumulator (engine/cuda/cl_accumulator.h);
// the first N layers may be at other bits
// (--cache-high-precision-layers). Their layouts are in
// gpu_cache_layout.h. A page holds kPageRows positions of one sequence in every layer (layer
// l's part of page p at base + pages * layer_offset[l] + p * page_bytes(l)), so one page table
// serves all layers and a page is exactly one of the scheduler's blocks: 16 tokens at the
// format's bytes per token. The per-channel formats keep each running sequence's unfilled block
// (and KIVI's last G values) in fp16 in a window slot of their own (xquant-cl-ch: every layer's
// newest rows of S, fp16 X or the fp32 residual stream). Sliding-window layers of the
// per-token formats (fp16, xquant, the per-token latent) live in a second pool where a sequence
// holds a ring of R pages (engine/cuda/sliding_ring.h): position p in ring page
// (p / kPageRows) % R, so those formats claim the window discount, with a sliding layer holding
// R * kPageRows tokens at most. The per-channel and cross-layer formats (kivi, xquant-ch, the
// per-channel K latent, xquant-cl*) keep every row of sliding layers and claim no discount.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/cache/cache_format.h"
#include "engine/cuda/device_buffer.h"
#include "engine/cuda/gpu_cache_layout.h"
#include "kernels/cuda/channel_ops.h"
#include "kernels/cuda/cuda_ops.h"

namespace xq::cuda {

// The device pool and its free list (host side; one engine thread uses it), and the fp16
// window slots of the per-channel formats (one per running sequence, layout.window_slot_bytes
// each).
class GpuPagePool {
 public:
  // `ring_pages`: the sliding layers' pool (layout.ring_pages > 0 only).
  GpuPagePool(GpuCacheLayout layout, int64_t pages, int window_slots = 0, int64_t ring_pages = 0);
  // A free page; std::logic_error when none is left (the scheduler's block accounting, which
  // counts the same pages, keeps that from happening).
  int alloc();
  void release(int page);
  // The same for the ring pool.
  int alloc_ring();
  void release_ring(int page) { free_ring_.push_back(page); }
  // Layer l's part of page 0 of its pool (the ring pool for a ring layer).
  uint8_t* layer_base(int layer) const {
    return mem_.get() + layout_.pool_begin(layer, pages_, ring_pages_);
  }
  // One layer's part of a page.
  size_t page_bytes(int layer) const { return layout_.page_bytes(layer); }
  size_t page_bytes_all_layers() const { return layout_.page_bytes_all_layers(); }
  int64_t pages() const { return pages_; }
  int64_t ring_pages() const { return ring_pages_; }
  int64_t free_ring_pages() const { return static_cast<int64_t>(free_ring_.size()); }
  const GpuCacheLayout& layout() const { return layout_; }
  int64_t free_pages() const { return static_cast<int64_t>(free_.size()); }
  // A free window slot; std::logic_error when none is left (the scheduler runs at most
  // max_num_seqs sequences, and the pool has that many).
  int alloc_window();
  void release_window(int slot) { free_windows_.push_back(slot); }
  uint8_t* window(int slot) const { return windows_.get() + slot * layout_.window_slot_bytes; }
  uint8_t* windows() const { return windows_.get(); }

 private:
  GpuCacheLayout layout_;
  int64_t pages_;
  int64_t ring_pages_;
  DeviceBuffer<uint8_t> mem_;
  std::vector<int> free_;
  std::vector<int> free_ring_;
  DeviceBuffer<uint8_t> windows_;
  std::vector<int> free_windows_;
};

// One sequence: its pages (position p in pages()[p / kPageRows]), its ring of the sliding
// layers (position p in ring()[(p / kPageRows) % R], at most R pages) and how many tokens they
// hold. The CUDA model writes and reads the rows; attend() is not how a GPU sequence is stepped.
class GpuSequence : public SequenceCache {
 public:
  explicit GpuSequence(std::shared_ptr<GpuPagePool> pool) : pool_(std::move(pool)) {}
  ~GpuSequence() override;

  void attend(const LayerAttnInput& in) override;  // throws std::logic_error
  int num_tokens() const override { return tokens_; }
  void truncate(int n) override;
  size_t bytes_used() const override;

  // Takes pages until positions [0, tokens) have one; the model then writes rows there.
  void reserve(int tokens);
  // Called by the model once all layers hold the new rows.
  void set_tokens(int tokens) { tokens_ = tokens; }
  const std::vector<int>& pages() const { return pages_; }
  const std::vector<int>& ring() const { return ring_; }
  // The sequence's window slot (per-channel formats, once it has rows; else -1).
  int window_slot() const { return window_; }

 private:
  std::shared_ptr<GpuPagePool> pool_;
  std::vector<int> pages_;
  std::vector<int> ring_;
  int tokens_ = 0;
  int window_ = -1;
};

class GpuCacheFormat : public CacheFormat {
 public:
  // Throws ConfigError for a format or bit width the GPU does not run. `max_step_rows`: the most
  // new rows a step gives one sequence (--max-num-batched-tokens), which sizes the sliding
  // layers' rings; 0: no rings, sliding layers keep every row.
  GpuCacheFormat(const ModelConfig& cfg, const CacheOptions& opts, int max_step_rows = 0);

  std::string name() const override;
  double layer_bytes_per_token(int layer) const override;
  double window_bytes_max() const override { return layout_.window_bytes_max; }
  std::unique_ptr<SequenceCache> new_sequence() const override;
  const ModelConfig& config() const override { return cfg_; }

  GpuCacheKind kind() const { return layout_.kind; }
  // The cached rows: X (XQuant), or [X U_k, X U_v] (XLatent, 2 * kv_dim wide), per layer.
  const GpuCacheLayout& layout() const { return layout_; }
  bool rematerializes() const { return kind() != GpuCacheKind::Kv16; }
  // Allocates the pool: `window_slots` window slots (per-channel formats), and as many pages as
  // the rest of `bytes` holds across all layers. Once, before any sequence is made. Returns the
  // bytes the scheduler may budget: the pages, and window_bytes_max() per slot (the slots' fp16
  // rows beyond that are the pages' own bytes of those tokens, counted twice on the device).
  // With rings, `window_slots` is the most sequences that run at once (--max-num-seqs): the
  // bytes split between the two pools (split_pool in sliding_ring.h) so that whatever the
  // scheduler admits fits both, and the blocks' bytes are returned. Where the bytes do not hold
  // every sequence's whole ring, the rings are dropped (every layer keeps every row, no
  // discount): the split's worst cases would then cost more blocks than the rings save.
  double allocate(double bytes, int window_slots = 0);
  const GpuPagePool& pool() const { return *pool_; }
  bool allocated() const { return pool_ != nullptr; }
  // XQuant's rows of one layer: quantizes x[n, row_width] (fp32) into the pages `map` names, in
  // the layer's layout; read_rows dequantizes them back into out[n, row_width] (bf16).
  void write_rows(int layer, const float* x, int n, RowMap map, cudaStream_t stream) const;
  void read_rows(int layer, int n, RowMap map, bf16* out, cudaStream_t stream) const;
  // The per-channel formats' stores: a layer's per-channel segment (its part of the pages, its
  // rows in the window slots), and KIVI's value ring (layout: the value rows' width and G).
  ChannelStore channel_store(int layer, const ChannelSegment& s) const;
  ChannelStore value_ring(int layer) const;

 protected:
  // A ring holds ring_pages * kPageRows tokens of a sliding layer (more than its window: the
  // step's own rows and the page rounding).
  bool forgets_outside_window() const override { return layout_.ring_pages > 0; }
  int sliding_slack_tokens() const override;

 private:
  ModelConfig cfg_;
  GpuCacheLayout layout_;
  std::shared_ptr<GpuPagePool> pool_;
};

}  // namespace xq::cuda
