#include "engine/cuda/gpu_cache.h"

#include <cmath>
#include <stdexcept>

namespace xq::cuda {

GpuPagePool::GpuPagePool(size_t page_bytes, int layers, int64_t pages)
    : page_bytes_(page_bytes), layers_(layers), pages_(pages) {
  if (pages <= 0) throw ConfigError("GPU cache: no room for a single cache page");
  mem_.reset(page_bytes * static_cast<size_t>(layers) * static_cast<size_t>(pages));
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

size_t GpuSequence::bytes_used() const {
  return pages_.size() * pool_->page_bytes() * static_cast<size_t>(pool_->layers());
}

void GpuSequence::reserve(int tokens) {
  const size_t need = (static_cast<size_t>(tokens) + kPageRows - 1) / kPageRows;
  while (pages_.size() < need) pages_.push_back(pool_->alloc());
}

GpuCacheFormat::GpuCacheFormat(const ModelConfig& cfg, const CacheOptions& opts) : cfg_(cfg) {
  if (opts.format == "fp16") {
    kind_ = GpuCacheKind::Kv16;
  } else if (opts.format == "xquant") {
    if (opts.bits != 2 && opts.bits != 3 && opts.bits != 4 && opts.bits != 8 && opts.bits != 16)
      throw ConfigError("xquant cache: bits must be 2, 3, 4, 8 or 16, got " +
                        std::to_string(opts.bits));
    if (opts.group_size < 1 || opts.group_size > 1024)
      throw ConfigError("xquant cache: group size must be 1..1024 on the GPU, got " +
                        std::to_string(opts.group_size));
    // The latent is worth it where the two latents together are narrower than X (GQA).
    const int kv = cfg.kv_dim();
    bool latent = opts.latent == "on" || (opts.latent == "auto" && 2 * kv < cfg.hidden_size);
    if (opts.latent != "on" && opts.latent != "off" && opts.latent != "auto")
      throw ConfigError("xquant latent must be on, off or auto, got '" + opts.latent + "'");
    if (latent && kv > cfg.hidden_size)
      throw ConfigError("xquant latent: kv_dim exceeds hidden_size; the latent would be wider");
    if (latent && opts.bits != 16 && kv % opts.group_size != 0)
      throw ConfigError("xquant latent on the GPU: kv_dim " + std::to_string(kv) +
                        " must be a multiple of the group size " + std::to_string(opts.group_size) +
                        " (each latent has its own groups)");
    if (latent && opts.latent_k == "channel")
      throw ConfigError(
          "--xquant-latent-k channel: the GPU engine quantizes both latents per token (use "
          "token or auto there; the CPU runs the per-channel K latent)");
    kind_ = latent ? GpuCacheKind::XLatent : GpuCacheKind::XQuant;
    x_layout_ = QuantRowLayout{latent ? 2 * kv : cfg.hidden_size, opts.bits, opts.group_size};
  } else {
    throw ConfigError("cache format " + opts.format +
                      " is not on the GPU engine yet (it runs fp16 and xquant; the others run "
                      "with --device cpu)");
  }
}

std::string GpuCacheFormat::name() const {
  const std::string bits = std::to_string(x_layout_.bits);
  if (kind_ == GpuCacheKind::Kv16) return "fp16";
  return (kind_ == GpuCacheKind::XLatent ? "xquant-latent-tok:" : "xquant:") + bits;
}

double GpuCacheFormat::layer_bytes_per_token(int) const {
  return static_cast<double>(page_bytes()) / kPageRows;
}

size_t GpuCacheFormat::page_bytes() const {
  const size_t row =
      kind_ == GpuCacheKind::Kv16 ? 2 * 2 * static_cast<size_t>(cfg_.kv_dim()) : x_layout_.bytes();
  return row * kPageRows;
}

void GpuCacheFormat::allocate(double bytes) {
  if (pool_) throw std::logic_error("GPU cache: allocated twice");
  const double per_page = static_cast<double>(page_bytes()) * cfg_.num_layers;
  pool_ = std::make_shared<GpuPagePool>(page_bytes(), cfg_.num_layers,
                                        static_cast<int64_t>(std::floor(bytes / per_page)));
}

std::unique_ptr<SequenceCache> GpuCacheFormat::new_sequence() const {
  if (!pool_) throw std::logic_error("GPU cache: a sequence before the pool");
  return std::make_unique<GpuSequence>(pool_);
}

}  // namespace xq::cuda
