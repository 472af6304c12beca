// The tensor-core variant of paged_attention_splits (decode_ops.h), which dispatches to it for
// head sizes that are a multiple of 16. `aligned`: every K/V row start is 16-byte aligned, so
// tiles are copied asynchronously, double-buffered. `past_rope`, `fold` (or null): see
// paged_attention_splits.
#pragma once

#include "kernels/cuda/decode_ops.h"

namespace xq::cuda {

void paged_attention_mma(const float* q, int rows, const int* row_seq, const AttnSeq* seqs,
                         const int* tables, KvPages kv, AttnParams p, SplitPartials out,
                         bool aligned, const RopeAngles* past_rope, const FoldRows* fold,
                         cudaStream_t stream);

}  // namespace xq::cuda
