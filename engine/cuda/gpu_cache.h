// The cache formats the CUDA engine runs, in one pool of pages on the device: fp16 K/V (the
// baseline), XQuant's X in per-token groups (2/3/4/8 bits, or fp16 at 16), and for GQA models
// X on the SVD latents of Wk and Wv (X U_k and X U_v side by side in one row, both quantized
// per token: the CPU's xquant-latent-tok). A page holds
// kPageRows positions of one sequence in every layer (layer l's part of page p at
// base + (l * pages + p) * page_bytes), so one page table serves all layers and a page is
// exactly one of the scheduler's blocks: 16 tokens at the format's bytes per token. Sliding
// layers keep every row here (their pages are shared with the global layers'), so the format
// claims no window discount.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/cache/cache_format.h"
#include "engine/cuda/device_buffer.h"
#include "kernels/cuda/cuda_ops.h"

namespace xq::cuda {

enum class GpuCacheKind { Kv16, XQuant, XLatent };

// The device pool and its free list (host side; one engine thread uses it).
class GpuPagePool {
 public:
  GpuPagePool(size_t page_bytes, int layers, int64_t pages);
  // A free page; std::logic_error when none is left (the scheduler's block accounting, which
  // counts the same pages, keeps that from happening).
  int alloc();
  void release(int page);
  uint8_t* layer_base(int layer) const {
    return mem_.get() + static_cast<size_t>(layer) * static_cast<size_t>(pages_) * page_bytes_;
  }
  size_t page_bytes() const { return page_bytes_; }  // one layer's part of a page
  int64_t pages() const { return pages_; }
  int layers() const { return layers_; }
  int64_t free_pages() const { return static_cast<int64_t>(free_.size()); }

 private:
  size_t page_bytes_;
  int layers_;
  int64_t pages_;
  DeviceBuffer<uint8_t> mem_;
  std::vector<int> free_;
};

// One sequence: its pages (position p in pages()[p / kPageRows]) and how many tokens they hold.
// The CUDA model writes and reads the rows; attend() is not how a GPU sequence is stepped.
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

 private:
  std::shared_ptr<GpuPagePool> pool_;
  std::vector<int> pages_;
  int tokens_ = 0;
};

class GpuCacheFormat : public CacheFormat {
 public:
  // Throws ConfigError for a format or bit width the GPU does not run.
  GpuCacheFormat(const ModelConfig& cfg, const CacheOptions& opts);

  std::string name() const override;
  double layer_bytes_per_token(int layer) const override;
  std::unique_ptr<SequenceCache> new_sequence() const override;
  const ModelConfig& config() const override { return cfg_; }

  GpuCacheKind kind() const { return kind_; }
  // The cached row's layout: X (XQuant), or [X U_k, X U_v] (XLatent, 2 * kv_dim wide).
  QuantRowLayout x_layout() const { return x_layout_; }
  bool rematerializes() const { return kind_ != GpuCacheKind::Kv16; }
  // One layer's part of one page.
  size_t page_bytes() const;
  // Allocates the pool: as many pages as `bytes` holds across all layers. Once, before any
  // sequence is made.
  void allocate(double bytes);
  const GpuPagePool& pool() const { return *pool_; }
  bool allocated() const { return pool_ != nullptr; }

 protected:
  bool forgets_outside_window() const override { return false; }

 private:
  ModelConfig cfg_;
  GpuCacheKind kind_;
  QuantRowLayout x_layout_;
  std::shared_ptr<GpuPagePool> pool_;
};

}  // namespace xq::cuda
