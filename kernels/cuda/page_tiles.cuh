// Staging a tile of fp16 K/V rows from the paged cache into shared memory, for the paged
// attention kernels: position `at` of a sequence is row at % kPageRows of page
// table[at / kPageRows]; a KV head's D values start kvh * D into the row.
#pragma once

#include <cuda_pipeline.h>

#include <type_traits>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/split_util.cuh"

namespace xq::cuda::detail {

__device__ inline size_t page_row_offset(const int* table, const KvPages& kv, int kvh, int D,
                                         int at) {
  return static_cast<size_t>(table[at / kPageRows]) * kv.page_stride +
         static_cast<size_t>(at % kPageRows) * kv.row_stride + static_cast<size_t>(kvh) * D;
}

// Query row r's split `split` of `splits`: the positions [rg.begin, rg.end) of its sequence it
// scores (causal, inside its window; whole tiles of `tile`) and the sequence's page table.
struct RowSplit {
  SplitRange rg;
  const int* table;
  int past_end;  // positions before it were cached before this step (the rest are its new rows)
};
__device__ inline RowSplit row_split(const int* row_seq, const AttnSeq* seqs, const int* tables,
                                     const AttnParams& p, int r, int split, int splits,
                                     int tile) {
  const AttnSeq s = seqs[row_seq[r]];
  const int pos = s.start_pos + (r - s.q_row);
  const int first = p.window > 0 ? max(0, pos - p.window + 1) : 0;
  return {split_range(first, pos + 1, split, splits, tile), tables + s.table, s.start_pos};
}

// Copies the tile's rows [c0, c0 + len) of K and V (head kvh) into k_s, v_s (rows `ld` halves
// apart), VEC halves per load.
template <int VEC>
__device__ void stage_tile(const int* table, const KvPages& kv, int kvh, int D, int c0, int len,
                           half* k_s, half* v_s, int ld) {
  using Vec = typename std::conditional<VEC == 8, uint4, uint32_t>::type;
  const int vecs = D / VEC;
  for (int e = threadIdx.x; e < len * vecs; e += kSplitThreads) {
    const int j = e / vecs, c = (e % vecs) * VEC;
    const size_t off = page_row_offset(table, kv, kvh, D, c0 + j) + c;
    *reinterpret_cast<Vec*>(k_s + j * ld + c) = *reinterpret_cast<const Vec*>(kv.k + off);
    *reinterpret_cast<Vec*>(v_s + j * ld + c) = *reinterpret_cast<const Vec*>(kv.v + off);
  }
}

// The same with asynchronous 16-byte copies (rows 16-byte aligned): the caller commits them as
// one group and waits before reading, so the next tile's loads overlap this tile's math. A null
// v_s copies K alone.
__device__ inline void stage_tile_async(const int* table, const KvPages& kv, int kvh, int D, int c0,
                                        int len, half* k_s, half* v_s, int ld) {
  const int vecs = D / 8;
  for (int e = threadIdx.x; e < len * vecs; e += kSplitThreads) {
    const int j = e / vecs, c = (e % vecs) * 8;
    const size_t off = page_row_offset(table, kv, kvh, D, c0 + j) + c;
    __pipeline_memcpy_async(k_s + j * ld + c, kv.k + off, 16);
    if (v_s) __pipeline_memcpy_async(v_s + j * ld + c, kv.v + off, 16);
  }
}

}  // namespace xq::cuda::detail
