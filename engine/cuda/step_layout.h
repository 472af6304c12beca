// StepLayout: the index arrays one forward step of the CUDA model needs (token ids, positions,
// where each new row goes in the cache, page tables; for XQuant, where each past row is
// rematerialized), built on the host and uploaded in one copy. The same arrays serve every
// layer of a pool: the global layers' pages, and where the cache has sliding-window rings
// (engine/cuda/sliding_ring.h), the ring layers' own maps, written with the ring unrolled
// (entry j of a sequence's ring table is its ring page j % R, for the pages its window reaches)
// so that kernels index both pools alike: table[at / kPageRows].
#pragma once

#include <cstddef>
#include <vector>

#include "kernels/cuda/cuda_ops.h"

namespace xq::cuda {

struct StepSeq {
  const std::vector<int>* pages = nullptr;  // the sequence's cache pages, covering start + n
  const int* tokens = nullptr;
  int start = 0;  // position of the first new token (= tokens already cached)
  int n = 0;      // new tokens
  // The sliding layers' ring (null: no ring), of ring_pages pages once full, and their window:
  // the remat path leaves the positions no query of the step sees undequantized.
  const std::vector<int>* ring = nullptr;
  int ring_pages = 0;
  int window = 0;
};

// Offsets are element offsets into `ints`; an AttnSeq takes 4 ints.
struct StepLayout {
  int rows = 0;  // new tokens of the whole batch
  std::vector<int> ints;
  size_t tokens = 0, pos = 0, row_seq = 0, new_page = 0, new_slot = 0;
  size_t seqs = 0, tables = 0;  // AttnSeq per sequence over the cache's pages
  // With rings: each new row's ring page (its slot is new_slot's), and AttnSeq per sequence
  // whose table offsets (from `tables`) name its unrolled ring: entries only from the page of
  // the oldest position the step's queries see, the offset shifted back by the pages before. Both
  // sit before the tables, so a decode step's offsets depend only on its batch size (CUDA graphs
  // replay them).
  bool ring = false;
  size_t ring_new_page = 0, ring_seqs = 0;

  // XQuant: sequences in consecutive groups whose rematerialized rows fit the workspace. Each
  // sequence gets whole workspace pages for positions [0, start + n); its past rows are
  // dequantized there, its new rows' K/V written there from the step's own projections.
  struct Group {
    int seq_begin = 0, seq_end = 0;
    int row_begin = 0, rows = 0;               // its new tokens: rows [row_begin, row_begin + rows)
    int ws_rows = 0;                           // workspace rows it uses (a multiple of kPageRows)
    size_t seqs = 0, tables = 0, row_seq = 0;  // attention over the workspace, rows relative
    size_t ws_pos = 0, src_page = 0, src_slot = 0;  // per workspace row
    size_t ring_src_page = 0;  // per workspace row, with rings: src_page in the ring pool
    // Per workspace row: the cache page of its position, the new ones included (XQuant-CL reads
    // the new rows' deltas back once written; -1 for padding).
    size_t cache_page = 0;
    size_t new_page = 0, new_slot = 0;  // per new row of the group: workspace page
    // For folding V (few new rows per sequence): each sequence's first workspace row and the
    // offset of its softmax weights ([n, heads, start + n]), and their total.
    int max_n = 0;
    size_t seq_x_row = 0, seq_probs = 0;
    size_t probs_floats = 0;  // SIZE_MAX when too many to index with int
  };
  std::vector<Group> groups;
  int max_ws_rows = 0;  // the largest group's workspace rows
};

// `ws_rows`: the workspace's capacity in rows (0: no rematerialization, fp16 K/V). A sequence
// larger than it gets a group of its own, and max_ws_rows says how much to grow.
StepLayout build_step_layout(const std::vector<StepSeq>& seqs, int ws_rows, int num_heads);

}  // namespace xq::cuda
