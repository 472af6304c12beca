// summarize_logit_rows: one 1024-thread block per row. The k best ids come from a radix select
// on the logits' order-preserving bit patterns (four 8-bit passes over the row, counted in a
// shared histogram with warp-aggregated atomics), the draw from a block-wide scan of per-thread
// contiguous chunk sums, so that the walk visits ids in id order as the host's does.
#include <cfloat>
#include <cstdint>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/launch_util.cuh"
#include "kernels/cuda/sample_ops.h"

namespace xq::cuda {
namespace {

constexpr int kBlock = 1024;
constexpr int kEqBuffer = 1024;  // ids tied at the k-th value collected before a serial scan

// Unsigned keys in the order of the floats (greater float, greater key).
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Exclusive prefix of v over the block, and the block's total.
__device__ double block_exclusive_scan(double v, double* warp_sums, double& total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  double inc = v;
  for (int o = 1; o < 32; o <<= 1) {
    const double up = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += up;
  }
  if (lane == 31) warp_sums[warp] = inc;
  __syncthreads();
  if (warp == 0) {
    double w = lane < (blockDim.x >> 5) ? warp_sums[lane] : 0.0;
    for (int o = 1; o < 32; o <<= 1) {
      const double up = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += up;
    }
    warp_sums[lane] = w;  // inclusive over warps
  }
  __syncthreads();
  const double before = warp == 0 ? 0.0 : warp_sums[warp - 1];
  total = warp_sums[(blockDim.x >> 5) - 1];
  __syncthreads();
  return before + inc - v;
}

__global__ void __launch_bounds__(kBlock)
    summarize_rows_kernel(const float* __restrict__ logits, int vocab, int listable, int k,
                          const float* __restrict__ inv_ts, const double* __restrict__ u01s,
                          LogitSummaries out) {
  const int r = blockIdx.x, tid = threadIdx.x;
  const float* row = logits + static_cast<size_t>(r) * vocab;
  __shared__ float fscratch[32];
  __shared__ double dscratch[32];
  __shared__ unsigned hist[256];
  __shared__ uint32_t s_prefix, s_mask;
  __shared__ int s_need, s_gt, s_eq;
  __shared__ int cand[kMaxSummaryCandidates];
  __shared__ int eq_ids[kEqBuffer];

  // The log-sum-exp of the whole row.
  float mx = -FLT_MAX;
  for (int i = tid; i < vocab; i += kBlock) mx = fmaxf(mx, row[i]);
  mx = detail::block_reduce(mx, detail::MaxOp{}, fscratch);
  double se = 0.0;
  for (int i = tid; i < vocab; i += kBlock) se += expf(row[i] - mx);
  se = detail::block_reduce(se, detail::SumOp<double>{}, dscratch);
  if (tid == 0) out.lse[r] = static_cast<double>(mx) + log(se);

  // Radix select of the kk-th largest key among the listable ids.
  const int kk = min(k, listable);
  if (tid == 0) {
    s_prefix = 0;
    s_mask = 0;
    s_need = kk;
    s_gt = 0;
    s_eq = 0;
  }
  __syncthreads();
  for (int shift = 24; shift >= 0 && kk > 0; shift -= 8) {
    for (int b = tid; b < 256; b += kBlock) hist[b] = 0;
    __syncthreads();
    const uint32_t prefix = s_prefix, mask = s_mask;
    for (int i = tid; i < listable; i += kBlock) {
      const uint32_t key = order_key(row[i]);
      if ((key & mask) != prefix) continue;
      const unsigned bin = (key >> shift) & 255u;
      const unsigned peers = __match_any_sync(__activemask(), bin);
      if ((threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&hist[bin], __popc(peers));
    }
    __syncthreads();
    if (tid == 0) {
      int above = 0;
      for (int b = 255; b >= 0; --b) {
        const int c = static_cast<int>(hist[b]);
        if (above + c >= s_need) {
          s_prefix |= static_cast<uint32_t>(b) << shift;
          s_mask |= 255u << shift;
          s_need -= above;
          break;
        }
        above += c;
      }
    }
    __syncthreads();
  }
  // Ids above the threshold key, then the lowest `need` ids at it.
  const uint32_t thr = s_prefix;
  const int need = s_need;
  for (int i = tid; i < listable && kk > 0; i += kBlock) {
    const uint32_t key = order_key(row[i]);
    if (key > thr) {
      cand[atomicAdd(&s_gt, 1)] = i;
    } else if (key == thr) {
      const int e = atomicAdd(&s_eq, 1);
      if (e < kEqBuffer) eq_ids[e] = i;
    }
  }
  __syncthreads();
  const int gt = s_gt, eq = s_eq;
  if (eq <= kEqBuffer) {
    for (int j = tid; j < eq; j += kBlock) {
      int rank = 0;
      for (int m = 0; m < eq; ++m) rank += eq_ids[m] < eq_ids[j];
      if (rank < need) cand[gt + rank] = eq_ids[j];
    }
  } else if (tid == 0) {  // a row of many equal logits: the lowest ids, one by one
    int got = 0;
    for (int i = 0; i < listable && got < need; ++i) {
      if (order_key(row[i]) == thr) cand[gt + got++] = i;
    }
  }
  __syncthreads();
  // Best first, ties by id: each candidate's place is the number that beat it.
  if (tid < k) {
    int id = -1;
    float v = 0.0f;
    if (tid < kk) {
      const int mine = cand[tid];
      const float lv = row[mine];
      int rank = 0;
      for (int m = 0; m < kk; ++m) {
        const float o = row[cand[m]];
        rank += o > lv || (o == lv && cand[m] < mine);
      }
      out.ids[r * k + rank] = mine;
      out.logits[r * k + rank] = lv;
    } else {
      out.ids[r * k + tid] = id;
      out.logits[r * k + tid] = v;
    }
  }

  // Softmax weights at the row's temperature and the draw, over contiguous chunks of ids.
  const float inv_t = inv_ts[r];
  const double u01 = u01s[r];
  if (tid == 0) {
    out.sum_t[r] = 0.0;
    out.drawn[r] = -1;
  }
  if (!(inv_t > 0.0f) || kk == 0) return;
  // The best listable logit: the first candidate (every thread reads it from the row).
  float best = -FLT_MAX;
  for (int m = 0; m < kk; ++m) best = fmaxf(best, row[cand[m]]);
  const float shift = best * inv_t;
  const int chunk = (listable + kBlock - 1) / kBlock;
  const int lo = min(listable, tid * chunk), hi = min(listable, lo + chunk);
  double own = 0.0;
  for (int i = lo; i < hi; ++i) own += expf(fmaxf(row[i] * inv_t - shift, -104.0f));
  double total = 0.0;
  const double before = block_exclusive_scan(own, dscratch, total);
  if (tid == 0) out.sum_t[r] = total;
  if (!(u01 >= 0.0) || !(total > 0.0)) return;
  const double u = u01 * total;
  if (before <= u && u < before + own) {
    double cum = before;
    int last = -1, pick = -1;
    for (int i = lo; i < hi; ++i) {
      const float p = expf(fmaxf(row[i] * inv_t - shift, -104.0f));
      cum += p;
      if (p > 0.0f) last = i;
      if (u < cum && p > 0.0f) {
        pick = i;
        break;
      }
    }
    if (pick < 0) pick = last;  // rounding left u past the chunk's last weight
    out.drawn[r] = pick;
    out.drawn_logit[r] = row[pick];
  }
}

}  // namespace

void summarize_logit_rows(const float* logits, int rows, int vocab, int listable, int k,
                          const float* inv_t, const double* u01, LogitSummaries out,
                          cudaStream_t stream) {
  if (rows <= 0) return;
  if (k < 1 || k > kMaxSummaryCandidates || listable < 1 || listable > vocab)
    throw CudaError("summarize_logit_rows: bad k or listable");
  summarize_rows_kernel<<<rows, kBlock, 0, stream>>>(logits, vocab, listable, k, inv_t, u01, out);
  check(cudaGetLastError(), "summarize_logit_rows");
}

}  // namespace xq::cuda
