// Row summaries of fp32 logits on the device, so that a step's sampling moves candidates, not
// rows, to the host (engine/logit_summary.h has the meaning of each field and the host
// reference, summarize_row).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace xq::cuda {

inline constexpr int kMaxSummaryCandidates = 64;

// Per row r: ids/logits[r * k .. + k) the k best of the first `listable` ids (by logit, ties by
// id; fewer when listable < k, the rest -1), lse[r] over all `vocab` ids, and where
// inv_t[r] > 0 the sum over the listable ids of exp(l * inv_t - best * inv_t) in sum_t[r] and,
// where u01[r] >= 0, the id that the walk over them in id order with u01 * sum_t lands on in
// drawn[r] (-1 otherwise) with its logit in drawn_logit[r].
struct LogitSummaries {
  int* ids = nullptr;
  float* logits = nullptr;
  double* lse = nullptr;
  double* sum_t = nullptr;
  int* drawn = nullptr;
  float* drawn_logit = nullptr;
};

// The device scratch summarize_logit_rows needs for `rows` rows (per chunk of ids: sums and
// k candidates).
size_t summary_scratch_bytes(int rows, int vocab, int k);

// k <= kMaxSummaryCandidates; `scratch` holds summary_scratch_bytes(rows, vocab, k) bytes.
void summarize_logit_rows(const float* logits, int rows, int vocab, int listable, int k,
                          const float* inv_t, const double* u01, void* scratch,
                          LogitSummaries out, cudaStream_t stream);

// One logit's change before a draw (engine/logit_summary.h's LogitEdit, with its row): in this
// order, where `ops` has the bit, l = l > 0 ? l / rep : l * rep; l -= sub; l += add; l = -inf.
struct RowEdit {
  int row, id;
  unsigned ops;  // 1: rep, 2: sub, 4: add, 8: ban
  float rep, sub, add;
};

// Applies n edits (at most one per row and id) to rows of `vocab` logits in place, each
// operation rounded as on the host (no contraction, no fast division), and keeps each edited
// logit's value before the edit in unedited[i].
void apply_row_edits(float* logits, int vocab, const RowEdit* edits, int n, float* unedited,
                     cudaStream_t stream);
// Puts the values apply_row_edits kept back.
void restore_row_edits(float* logits, int vocab, const RowEdit* edits, int n, const float* unedited,
                       cudaStream_t stream);

}  // namespace xq::cuda
