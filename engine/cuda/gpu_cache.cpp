#include "engine/cuda/gpu_cache.h"

#include <cmath>
#include <stdexcept>
#include <utility>

namespace xq::cuda {

GpuPagePool::GpuPagePool(GpuCacheLayout layout, int64_t pages)
    : layout_(std::move(layout)), pages_(pages) {
  if (pages <= 0) throw ConfigError("GPU cache: no room for a single cache page");
  mem_.reset(layout_.page_bytes_all_layers() * static_cast<size_t>(pages));
  free_.reserve(pages);
  // Lowest pages first (popped from the back).
  for (int64_t p = pages - 1; p >= 0; --p) free_.push_back(static_cast<int>(p));
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
}

void GpuSequence::attend(const LayerAttnInput&) {
  throw std::logic_error("a GPU cache sequence is stepped by the CUDA model, not attend()");
}

void GpuSequence::truncate(int n) {
  if (n < 0) throw std::invalid_argument("GPU cache: truncate to a negative length");
  if (n >= tokens_) return;
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
}

GpuCacheFormat::GpuCacheFormat(const ModelConfig& cfg, const CacheOptions& opts)
    : cfg_(cfg), layout_(gpu_cache_layout(cfg, opts)) {}

std::string GpuCacheFormat::name() const { return layout_.name; }

double GpuCacheFormat::layer_bytes_per_token(int layer) const {
  return static_cast<double>(layout_.page_bytes(layer)) / kPageRows;
}

void GpuCacheFormat::allocate(double bytes) {
  if (pool_) throw std::logic_error("GPU cache: allocated twice");
  const double per_page = static_cast<double>(layout_.page_bytes_all_layers());
  pool_ =
      std::make_shared<GpuPagePool>(layout_, static_cast<int64_t>(std::floor(bytes / per_page)));
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

std::unique_ptr<SequenceCache> GpuCacheFormat::new_sequence() const {
  if (!pool_) throw std::logic_error("GPU cache: a sequence before the pool");
  return std::make_unique<GpuSequence>(pool_);
}

}  // namespace xq::cuda
