// The sliding-window discount on the GPU: a sliding layer needs only the rows its window sees,
// so those layers live in a second pool where a sequence holds a ring of R pages (position p
// of a sliding layer in ring page (p / kPageRows) % R), while the global layers keep a page per
// kPageRows positions. Host arithmetic only (no CUDA), so the CPU build tests it
// (tests/unit/engine_gpu_ring_test.cpp): the ring's size, which layers it takes, and how a byte
// budget splits between the two pools so that whatever the scheduler admits fits both.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/cuda/gpu_cache_layout.h"

namespace xq::cuda {

// Pages a ring needs so that one step never overwrites a row it reads: a query at p sees
// [p - window + 1, p], so a step adding `max_step_rows` rows to a sequence at `start` reads and
// writes positions [start - window + 1, start + max_step_rows), which touch at most
// ceil((window - 1 + max_step_rows) / kPageRows) + 1 pages.
int ring_pages_for(int window, int max_step_rows);

// Gives the sliding layers of a per-token format (fp16, xquant, the per-token latent) a ring
// sized for steps of at most `max_step_rows` rows per sequence, and places each layer in its
// pool. No ring (layout unchanged, every layer in the one pool) for a model without sliding
// layers or without a global one, for max_step_rows <= 0, or for the formats whose past sits in
// per-channel blocks or cross-layer chains (kivi, xquant-ch, the per-channel K latent,
// xquant-cl*): those keep every row of every layer.
void add_sliding_ring(GpuCacheLayout& layout, const ModelConfig& cfg, int max_step_rows);

// Takes the ring away again (every layer back in the one pool).
void drop_sliding_ring(GpuCacheLayout& layout);

// How a byte budget is spent: `pages` global pages, `ring_pages` ring pages, and the scheduler's
// blocks (kPageRows tokens at a token's full cost each) they back.
struct PoolSplit {
  int64_t pages = 0;
  int64_t ring_pages = 0;
  int64_t blocks = 0;
};

// The pages the scheduler's `blocks` may need at most, for up to `max_seqs` sequences, when it
// counts a token at (page_bytes + ring_page_bytes) / kPageRows and a sequence's sliding layers at
// most ring * kPageRows tokens (scheduler/block_manager.h). Every sequence of n tokens needs
// ceil(n / kPageRows) global pages and min(that, ring) ring pages. The ring pages: at most a
// block each, at most `ring` per sequence. The global pages: one per block below the ring's
// size; past it a block of a sequence pays the sliding layers nothing, so it covers
// 1 + ring_page_bytes / page_bytes global pages.
PoolSplit pages_for_blocks(int64_t blocks, size_t page_bytes, size_t ring_page_bytes, int ring,
                           int max_seqs);

// The most blocks whose pages_for_blocks() fit in `bytes`.
PoolSplit split_pool(double bytes, size_t page_bytes, size_t ring_page_bytes, int ring,
                     int max_seqs);

}  // namespace xq::cuda
