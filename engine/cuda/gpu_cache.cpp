#include "engine/cuda/gpu_cache.h"

#include <cmath>
#include <stdexcept>
#include <utility>

namespace xq::cuda {

GpuPagePool::GpuPagePool(GpuCacheLayout layout, int64_t pages, int window_slots)
    : layout_(std::move(layout)), pages_(pages) {
  if (pages <= 0) throw ConfigError("GPU cache: no room for a single cache page");
  mem_.reset(layout_.page_bytes_all_layers() * static_cast<size_t>(pages));
  free_.reserve(pages);
  // Lowest pages first (popped from the back).
  for (int64_t p = pages - 1; p >= 0; --p) free_.push_back(static_cast<int>(p));
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

GpuSequence::~GpuSequence() {
  for (int p : pages_) pool_->release(p);
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
  while (pages_.size() > keep) {
    pool_->release(pages_.back());
    pages_.pop_back();
  }
  tokens_ = n;
}

size_t GpuSequence::bytes_used() const { return pages_.size() * pool_->page_bytes_all_layers(); }

void GpuSequence::reserve(int tokens) {
  const size_t need = (static_cast<size_t>(tokens) + kPageRows - 1) / kPageRows;
  while (pages_.size() < need) pages_.push_back(pool_->alloc());
  if (window_ < 0 && tokens > 0 && pool_->layout().has_channel_blocks())
    window_ = pool_->alloc_window();
}

GpuCacheFormat::GpuCacheFormat(const ModelConfig& cfg, const CacheOptions& opts)
    : cfg_(cfg), layout_(gpu_cache_layout(cfg, opts)) {}

std::string GpuCacheFormat::name() const { return layout_.name; }

double GpuCacheFormat::layer_bytes_per_token(int layer) const {
  return static_cast<double>(layout_.page_bytes(layer)) / kPageRows;
}

double GpuCacheFormat::allocate(double bytes, int window_slots) {
  if (pool_) throw std::logic_error("GPU cache: allocated twice");
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
