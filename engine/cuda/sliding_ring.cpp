#include "engine/cuda/sliding_ring.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

namespace xq::cuda {

int ring_pages_for(int window, int max_step_rows) {
  return (window - 1 + max_step_rows + kPageRows - 1) / kPageRows + 1;
}

void add_sliding_ring(GpuCacheLayout& layout, const ModelConfig& cfg, int max_step_rows) {
  drop_sliding_ring(layout);
  const bool per_token =
      layout.kind == GpuCacheKind::Kv16 ||
      ((layout.kind == GpuCacheKind::XQuant || layout.kind == GpuCacheKind::XLatent) &&
       !layout.has_channel_blocks());
  if (!per_token || max_step_rows <= 0 || cfg.sliding_window <= 0) return;
  std::vector<bool> ring(cfg.num_layers);
  int sliding = 0;
  for (int l = 0; l < cfg.num_layers; ++l) sliding += (ring[l] = cfg.is_sliding(l)) ? 1 : 0;
  // Every layer sliding would leave the global pool empty, its pages free to hold: not worth a
  // special case for a model family the server does not load.
  if (sliding == 0 || sliding == cfg.num_layers) return;
  layout.in_ring = std::move(ring);
  layout.ring_pages = ring_pages_for(cfg.sliding_window, max_step_rows);
  layout.ring_step_rows = max_step_rows;
}

void drop_sliding_ring(GpuCacheLayout& layout) {
  layout.ring_pages = 0;
  layout.ring_step_rows = 0;
  layout.in_ring.assign(layout.layers(), false);
}

PoolSplit pages_for_blocks(int64_t blocks, size_t page_bytes, size_t ring_page_bytes, int ring,
                           int max_seqs) {
  PoolSplit s;
  s.blocks = blocks;
  const int64_t seqs = std::max(1, max_seqs);
  s.ring_pages = std::min(blocks, seqs * ring);
  // A sequence past ring * kPageRows tokens holds b > ring blocks and at most
  // b + k (b - ring) + 1 global pages, k = ring_page_bytes / page_bytes (the "+ 1" its pages'
  // rounding); m such sequences and short ones (a page per block) together at most
  // blocks + k (blocks - ring m) + m: linear in m, so the largest is at m = 1 or the most.
  double most = static_cast<double>(blocks);
  const int64_t long_seqs = std::min(seqs, blocks / (ring + 1));
  if (long_seqs >= 1) {
    const double k = static_cast<double>(ring_page_bytes) / static_cast<double>(page_bytes);
    for (int64_t m : {int64_t{1}, long_seqs})
      most =
          std::max(most, static_cast<double>(blocks) + k * static_cast<double>(blocks - ring * m) +
                             static_cast<double>(m));
  }
  // One page more than the bound: the scheduler's shares are doubles.
  s.pages = static_cast<int64_t>(std::ceil(most)) + 1;
  return s;
}

PoolSplit split_pool(double bytes, size_t page_bytes, size_t ring_page_bytes, int ring,
                     int max_seqs) {
  const auto cost = [&](const PoolSplit& s) {
    return static_cast<double>(s.pages) * static_cast<double>(page_bytes) +
           static_cast<double>(s.ring_pages) * static_cast<double>(ring_page_bytes);
  };
  // A block costs at least its page of both pools, so no more blocks than that fit.
  int64_t lo = 0, hi = static_cast<int64_t>(std::max(0.0, bytes) /
                                            static_cast<double>(page_bytes + ring_page_bytes)) +
                       1;
  while (hi - lo > 1) {  // the needs grow with the blocks: the largest that fits
    const int64_t mid = lo + (hi - lo) / 2;
    if (cost(pages_for_blocks(mid, page_bytes, ring_page_bytes, ring, max_seqs)) <= bytes)
      lo = mid;
    else
      hi = mid;
  }
  if (lo == 0) return {};
  return pages_for_blocks(lo, page_bytes, ring_page_bytes, ring, max_seqs);
}

}  // namespace xq::cuda
