#include "engine/cuda/gpu_cache.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>

#include "engine/cuda/sliding_ring.h"

namespace xq::cuda {

GpuPagePool::GpuPagePool(GpuCacheLayout layout, int64_t pages, int window_slots, int64_t ring_pages)
    : layout_(std::move(layout)), pages_(pages), ring_pages_(ring_pages) {
  if (pages <= 0) throw ConfigError("GPU cache: no room for a single cache page");
  if ((layout_.ring_pages > 0) != (ring_pages > 0))
    throw std::logic_error("GPU cache: ring pages without a ring, or a ring without pages");
  mem_.reset(layout_.global_page_bytes() * static_cast<size_t>(pages) +
             layout_.ring_page_bytes() * static_cast<size_t>(ring_pages));
  free_.reserve(pages);
  // Lowest pages first (popped from the back).
  for (int64_t p = pages - 1; p >= 0; --p) free_.push_back(static_cast<int>(p));
  for (int64_t p = ring_pages - 1; p >= 0; --p) free_ring_.push_back(static_cast<int>(p));
  if (layout_.window_slot_bytes == 0) return;
  windows_.reset(layout_.window_slot_bytes * static_cast<size_t>(window_slots));
  for (int s = window_slots - 1; s >= 0; --s) free_windows_.push_back(s);
}

int GpuPagePool::alloc_window() {
  if (free_windows_.empty()) throw std::logic_error("GPU cache: out of fp16 window slots");
  const int s = free_windows_.back();
  free_windows_.pop_back();
  return s;
}

int GpuPagePool::alloc() {
  if (free_.empty()) throw std::logic_error("GPU cache: out of pages");
  const int p = free_.back();
  free_.pop_back();
  return p;
}

void GpuPagePool::release(int page) { free_.push_back(page); }

int GpuPagePool::alloc_ring() {
  if (free_ring_.empty()) throw std::logic_error("GPU cache: out of sliding-window ring pages");
  const int p = free_ring_.back();
  free_ring_.pop_back();
  return p;
}

GpuSequence::~GpuSequence() {
  for (int p : pages_) pool_->release(p);
  for (int p : ring_) pool_->release_ring(p);
  if (window_ >= 0) pool_->release_window(window_);
}

void GpuSequence::attend(const LayerAttnInput&) {
  throw std::logic_error("a GPU cache sequence is stepped by the CUDA model, not attend()");
}

void GpuSequence::truncate(int n) {
  if (n < 0) throw std::invalid_argument("GPU cache: truncate to a negative length");
  if (n >= tokens_) return;
  // A per-channel block is quantized whole, and KIVI's values leave their fp16 window one by
  // one: their fp16 rows are gone, so the GPU cuts only to 0 (what preemption does) or within
  // the unfilled block of a format without KIVI's value window.
  const GpuCacheLayout& L = pool_->layout();
  if (n > 0 && L.has_channel_blocks() &&
      (!L.value_window.empty() || n < tokens_ / L.group * L.group))
    throw std::logic_error(
        "GPU cache: a per-channel format is truncated only to 0 or within "
        "its unfilled block (" +
        std::to_string(tokens_) + " tokens to " + std::to_string(n) + ")");
  if (n == 0 && window_ >= 0) {
    pool_->release_window(window_);
    window_ = -1;
  }
  const size_t keep = (static_cast<size_t>(n) + kPageRows - 1) / kPageRows;
  // A ring that went round has overwritten its first positions, as the CPU's sliding layers
  // forget them: such a sequence is cut only to 0 (check_truncate on the CPU says the same of
  // any forgotten row; the ring forgets later, so it takes every cut the CPU takes).
  const size_t R = static_cast<size_t>(L.ring_pages);
  if (n > 0 && R > 0 && pages_.size() > R)
    throw std::logic_error("GPU cache: a sliding-window ring that went round is cut only to 0 (" +
                           std::to_string(tokens_) + " tokens to " + std::to_string(n) + ")");
  while (pages_.size() > keep) {
    pool_->release(pages_.back());
    pages_.pop_back();
  }
  while (ring_.size() > std::min(keep, R)) {
    pool_->release_ring(ring_.back());
    ring_.pop_back();
  }
  tokens_ = n;
}

size_t GpuSequence::bytes_used() const {
  const GpuCacheLayout& L = pool_->layout();
  return pages_.size() * L.global_page_bytes() + ring_.size() * L.ring_page_bytes();
}

void GpuSequence::reserve(int tokens) {
  const size_t need = (static_cast<size_t>(tokens) + kPageRows - 1) / kPageRows;
  while (pages_.size() < need) pages_.push_back(pool_->alloc());
  const size_t ring = std::min(need, static_cast<size_t>(pool_->layout().ring_pages));
  while (ring_.size() < ring) ring_.push_back(pool_->alloc_ring());
  if (window_ < 0 && tokens > 0 && pool_->layout().has_channel_blocks())
    window_ = pool_->alloc_window();
}

GpuCacheFormat::GpuCacheFormat(const ModelConfig& cfg, const CacheOptions& opts, int max_step_rows)
    : cfg_(cfg), layout_(gpu_cache_layout(cfg, opts)) {
  add_sliding_ring(layout_, cfg_, max_step_rows);
}

int GpuCacheFormat::sliding_slack_tokens() const {
  if (layout_.ring_pages == 0) return 0;
  return layout_.ring_pages * kPageRows - (cfg_.sliding_window - 1);
}

std::string GpuCacheFormat::name() const { return layout_.name; }

double GpuCacheFormat::layer_bytes_per_token(int layer) const {
  return static_cast<double>(layout_.page_bytes(layer)) / kPageRows;
}

double GpuCacheFormat::allocate(double bytes, int window_slots) {
  if (pool_) throw std::logic_error("GPU cache: allocated twice");
  if (layout_.ring_pages > 0) {
    const int seqs = std::max(1, window_slots);
    const PoolSplit s = split_pool(bytes, layout_.global_page_bytes(), layout_.ring_page_bytes(),
                                   layout_.ring_pages, seqs);
    if (s.blocks >= static_cast<int64_t>(seqs) * layout_.ring_pages) {
      pool_ = std::make_shared<GpuPagePool>(layout_, s.pages, 0, s.ring_pages);
      return static_cast<double>(s.blocks) * static_cast<double>(layout_.page_bytes_all_layers());
    }
    drop_sliding_ring(layout_);
  }
  const double per_page = static_cast<double>(layout_.page_bytes_all_layers());
  if (layout_.window_slot_bytes == 0) window_slots = 0;
  const double windows = static_cast<double>(layout_.window_slot_bytes) * window_slots;
  const auto pages = static_cast<int64_t>(std::floor(std::max(0.0, bytes - windows) / per_page));
  if (pages <= 0 && windows > 0)
    throw ConfigError("GPU cache: the fp16 windows of " + std::to_string(window_slots) +
                      " sequences (--max-num-seqs) take " + std::to_string(windows / (1 << 20)) +
                      " MiB of the cache's " + std::to_string(bytes / (1 << 20)) +
                      " MiB and leave no room for a page");
  pool_ = std::make_shared<GpuPagePool>(layout_, pages, window_slots);
  return static_cast<double>(pages) * per_page + window_slots * layout_.window_bytes_max;
}

void GpuCacheFormat::write_rows(int layer, const float* x, int n, RowMap map,
                                cudaStream_t stream) const {
  for (const RowSegment& s : layout_.segments.at(layer))
    quantize_rows(x + s.col, n, s.layout, pool_->layer_base(layer) + s.offset,
                  pool_->page_bytes(layer), map, stream, layout_.row_width);
}

void GpuCacheFormat::read_rows(int layer, int n, RowMap map, bf16* out, cudaStream_t stream) const {
  for (const RowSegment& s : layout_.segments.at(layer))
    dequantize_rows(pool_->layer_base(layer) + s.offset, pool_->page_bytes(layer), s.layout, n, map,
                    out + s.col, stream, layout_.row_width);
}

ChannelStore GpuCacheFormat::channel_store(int layer, const ChannelSegment& s) const {
  return {pool_->layer_base(layer) + s.offset, pool_->page_bytes(layer),
          pool_->windows() + s.window_offset, layout_.window_slot_bytes, s.layout};
}

ChannelStore GpuCacheFormat::value_ring(int layer) const {
  const ChannelBlockLayout ring{layout_.segments.at(layer)[0].layout.width, 16, layout_.group};
  return {nullptr, 0, pool_->windows() + layout_.value_window.at(layer), layout_.window_slot_bytes,
          ring};
}

std::unique_ptr<SequenceCache> GpuCacheFormat::new_sequence() const {
  if (!pool_) throw std::logic_error("GPU cache: a sequence before the pool");
  return std::make_unique<GpuSequence>(pool_);
}

}  // namespace xq::cuda
