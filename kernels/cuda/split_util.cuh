// Device helpers shared by the split-context attention kernels (decode_ops.h): which positions a
// split covers, and the per-head online-softmax update over one tile of scores.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/launch_util.cuh"

namespace xq::cuda::detail {

constexpr int kSplitThreads = 256;
constexpr int kSplitWarps = kSplitThreads / 32;
constexpr int kMaxGroup = 16;  // query heads per KV head the split kernels take
constexpr int kMaxSplits = 64;

// Positions [begin, end) of split `split` of `splits` over [first, end): whole tiles of `tile`
// positions (aligned to multiples of tile) shared out evenly; may be empty.
struct SplitRange {
  int begin, end;
};
__device__ inline SplitRange split_range(int first, int end, int split, int splits, int tile) {
  const int t0 = first / tile, t1 = (end + tile - 1) / tile;
  const int per = (t1 - t0 + splits - 1) / splits;
  const int b = max(first, (t0 + split * per) * tile);
  const int e = min(end, (t0 + (split + 1) * per) * tile);
  return {b, max(b, e)};
}

__device__ inline float attn_score(float dot, float scale, float softcap) {
  float s = dot * scale;
  if (softcap > 0.0f) s = softcap * tanhf(s / softcap);
  return s;
}

// For each head g < heads (one warp per head): scores p[g * stride + j], j < len (-inf where a
// position is hidden), become exp(score - new max); m, l and corr (the factor earlier sums take)
// are updated. The caller synchronizes before and after.
__device__ inline void softmax_tile(float* p, int stride, int len, int heads, float* m, float* l,
                                    float* corr) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int g = warp; g < heads; g += kSplitWarps) {
    float* pg = p + g * stride;
    float mx = -INFINITY;
    for (int j = lane; j < len; j += 32) mx = fmaxf(mx, pg[j]);
    mx = warp_reduce(mx, MaxOp());
    const float m_old = m[g], m_new = fmaxf(m_old, mx);
    float sum = 0.0f;
    for (int j = lane; j < len; j += 32) {
      const float e = m_new == -INFINITY ? 0.0f : expf(pg[j] - m_new);
      pg[j] = e;
      sum += e;
    }
    sum = warp_reduce(sum, SumOp<float>());
    if (lane == 0) {
      const float c = m_new == -INFINITY ? 1.0f : expf(m_old - m_new);
      l[g] = l[g] * c + sum;
      m[g] = m_new;
      corr[g] = c;
    }
  }
}

// Index of (row, head, split) in SplitPartials.
__device__ inline size_t partial_index(int row, int heads, int head, int splits, int split) {
  return (static_cast<size_t>(row) * heads + head) * splits + split;
}

}  // namespace xq::cuda::detail
