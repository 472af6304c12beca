// summarize_logit_rows in two launches, so that a row is read by many SMs at once: a batch-1
// decode step has one 128k-wide row, which one block took ~190 us to summarize on an H200.
// 1. A block per chunk of kChunk ids of a row: the chunk's max and sum of exp (for the
//    log-sum-exp), its best listable logit and sum of tempered weights relative to it, and its
//    k best listable ids (a radix select on the logits' order-preserving bit patterns, in
//    shared memory). The row's k best, ties by id, are among the chunks' k best.
// 2. A block per row: merges the chunks (the k best by a radix select over the chunks'
//    candidates), finds the chunk the draw lands in from the chunks' weight sums, and walks
//    that chunk in id order (a block-wide scan), as the host's walk does.
#include <cfloat>
#include <cstdint>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/launch_util.cuh"
#include "kernels/cuda/sample_ops.h"

namespace xq::cuda {
namespace {

constexpr int kChunk = 1024;       // ids per chunk block; also the merge block's width
constexpr int kChunkThreads = 256;
constexpr int kMaxChunks = 512;    // vocabularies up to 512k ids

struct ChunkStats {
  double sum_exp;  // sum of exp(l - max) over the chunk's ids
  double sum_t;    // sum of exp(l inv_t - best inv_t) over its listable ids (best: theirs)
  float max, best;  // the chunk's max logit; its best listable logit (-FLT_MAX: none)
};

struct Scratch {
  ChunkStats* stats;  // [rows][chunks]
  int* ids;           // [rows][chunks][k]: the chunk's k best listable ids, -1 past them
  float* vals;
};

Scratch carve(void* scratch, int rows, int chunks, int k) {
  const size_t n = static_cast<size_t>(rows) * chunks;
  auto* stats = static_cast<ChunkStats*>(scratch);
  auto* ids = reinterpret_cast<int*>(stats + n);
  return {stats, ids, reinterpret_cast<float*>(ids + n * k)};
}

// Unsigned keys in the order of the floats (greater float, greater key).
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

struct Select {  // the radix select's shared state
  uint32_t prefix, mask;
  int need;  // how many ids at the threshold key the kk best take
};

// The kk-th largest of key(i), i in [0, n), ties broken later by id: four 8-bit passes counted
// in a shared histogram with warp-aggregated atomics. Every thread returns with st final.
template <class KeyAt>
__device__ void radix_select(int n, int kk, KeyAt key, unsigned* hist, Select& st) {
  if (threadIdx.x == 0) st = {0u, 0u, kk};
  __syncthreads();
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
    __syncthreads();
    const uint32_t prefix = st.prefix, mask = st.mask;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      bool valid = true;
      const uint32_t k = key(i, valid);
      if (!valid || (k & mask) != prefix) continue;
      const unsigned bin = (k >> shift) & 255u;
      const unsigned peers = __match_any_sync(__activemask(), bin);
      if ((threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&hist[bin], __popc(peers));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int above = 0;
      for (int b = 255; b >= 0; --b) {
        const int c = static_cast<int>(hist[b]);
        if (above + c >= st.need) {
          st.prefix |= static_cast<uint32_t>(b) << shift;
          st.mask |= 255u << shift;
          st.need -= above;
          break;
        }
        above += c;
      }
    }
    __syncthreads();
  }
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

__global__ void __launch_bounds__(kChunkThreads)
    chunk_kernel(const float* __restrict__ logits, int vocab, int listable, int k,
                 const float* __restrict__ inv_ts, int chunks, Scratch s) {
  const int c = blockIdx.x, r = blockIdx.y, tid = threadIdx.x;
  const int lo = c * kChunk, n = min(kChunk, vocab - lo);
  const int nl = max(0, min(n, listable - lo));  // the chunk's listable ids: a prefix of it
  __shared__ float v[kChunk];
  __shared__ float fscratch[32];
  __shared__ double dscratch[32];
  __shared__ unsigned hist[256];
  __shared__ Select st;
  __shared__ int s_gt, s_eq;
  __shared__ int gt_ids[kMaxSummaryCandidates];
  __shared__ int eq_ids[kChunk];
  const float* row = logits + static_cast<size_t>(r) * vocab + lo;
  for (int i = tid; i < n; i += kChunkThreads) v[i] = row[i];
  __syncthreads();

  float mx = -FLT_MAX, best = -FLT_MAX;
  for (int i = tid; i < n; i += kChunkThreads) {
    mx = fmaxf(mx, v[i]);
    if (i < nl) best = fmaxf(best, v[i]);
  }
  mx = detail::block_reduce(mx, detail::MaxOp{}, fscratch);
  best = detail::block_reduce(best, detail::MaxOp{}, fscratch);
  const float inv_t = inv_ts[r];
  const float shift = best * inv_t;
  double se = 0.0, st_sum = 0.0;
  for (int i = tid; i < n; i += kChunkThreads) {
    se += expf(v[i] - mx);
    if (inv_t > 0.0f && i < nl) st_sum += expf(fmaxf(v[i] * inv_t - shift, -104.0f));
  }
  se = detail::block_reduce(se, detail::SumOp<double>{}, dscratch);
  st_sum = detail::block_reduce(st_sum, detail::SumOp<double>{}, dscratch);
  const size_t at = static_cast<size_t>(r) * chunks + c;
  if (tid == 0) s.stats[at] = {se, st_sum, mx, best};

  // The chunk's kk best listable ids: those above the threshold key, then the lowest `need`
  // ids at it (a chunk holds at most kChunk of them: the buffer cannot overflow).
  const int kk = min(k, nl);
  int* out_ids = s.ids + at * k;
  float* out_vals = s.vals + at * k;
  for (int j = kk + tid; j < k; j += kChunkThreads) out_ids[j] = -1;
  if (kk == 0) return;
  radix_select(
      nl, kk, [&](int i, bool&) { return order_key(v[i]); }, hist, st);
  const uint32_t thr = st.prefix;
  const int need = st.need;
  if (tid == 0) s_gt = s_eq = 0;
  __syncthreads();
  for (int i = tid; i < nl; i += kChunkThreads) {
    const uint32_t key = order_key(v[i]);
    if (key > thr)
      gt_ids[atomicAdd(&s_gt, 1)] = i;
    else if (key == thr)
      eq_ids[atomicAdd(&s_eq, 1)] = i;
  }
  __syncthreads();
  const int gt = s_gt, eq = s_eq;
  for (int j = tid; j < gt; j += kChunkThreads) {
    out_ids[j] = lo + gt_ids[j];
    out_vals[j] = v[gt_ids[j]];
  }
  for (int j = tid; j < eq; j += kChunkThreads) {
    int rank = 0;
    for (int m = 0; m < eq; ++m) rank += eq_ids[m] < eq_ids[j];
    if (rank < need) {
      out_ids[gt + rank] = lo + eq_ids[j];
      out_vals[gt + rank] = v[eq_ids[j]];
    }
  }
}

__global__ void __launch_bounds__(kChunk)
    merge_kernel(const float* __restrict__ logits, int vocab, int listable, int k,
                 const float* __restrict__ inv_ts, const double* __restrict__ u01s, int chunks,
                 Scratch s, LogitSummaries out) {
  const int r = blockIdx.x, tid = threadIdx.x;
  __shared__ float fscratch[32];
  __shared__ double dscratch[32];
  __shared__ unsigned hist[256];
  __shared__ Select st;
  __shared__ int s_gt, s_pick, s_chunk;
  __shared__ double s_before;
  __shared__ int cand[kMaxSummaryCandidates];
  __shared__ int eq_before[kMaxChunks];
  const ChunkStats* cs = s.stats + static_cast<size_t>(r) * chunks;
  const int* ids = s.ids + static_cast<size_t>(r) * chunks * k;
  const float* vals = s.vals + static_cast<size_t>(r) * chunks * k;

  // The log-sum-exp and the best listable logit from the chunks'.
  float mx = -FLT_MAX, best = -FLT_MAX;
  for (int c = tid; c < chunks; c += kChunk) {
    mx = fmaxf(mx, cs[c].max);
    best = fmaxf(best, cs[c].best);
  }
  mx = detail::block_reduce(mx, detail::MaxOp{}, fscratch);
  best = detail::block_reduce(best, detail::MaxOp{}, fscratch);
  double se = 0.0;
  for (int c = tid; c < chunks; c += kChunk)
    se += cs[c].sum_exp * exp(static_cast<double>(cs[c].max) - mx);
  se = detail::block_reduce(se, detail::SumOp<double>{}, dscratch);
  if (tid == 0) out.lse[r] = static_cast<double>(mx) + log(se);

  // The kk best of the chunks' candidates; at the threshold key the lowest ids, which are those
  // of the earliest chunks (chunks are in id order), then the lowest within a chunk.
  const int kk = min(k, listable), n = chunks * k;
  radix_select(
      n, kk,
      [&](int e, bool& valid) {
        valid = ids[e] >= 0;
        return valid ? order_key(vals[e]) : 0u;
      },
      hist, st);
  const uint32_t thr = st.prefix;
  const int need = st.need;
  for (int c = tid; c < chunks; c += kChunk) eq_before[c] = 0;
  if (tid == 0) s_gt = 0;
  __syncthreads();
  for (int e = tid; e < n; e += kChunk) {
    if (ids[e] < 0) continue;
    const uint32_t key = order_key(vals[e]);
    if (key > thr)
      cand[atomicAdd(&s_gt, 1)] = e;
    else if (key == thr)
      atomicAdd(&eq_before[e / k], 1);
  }
  __syncthreads();
  if (tid == 0) {  // per chunk: the tied candidates of the chunks before it
    int sum = 0;
    for (int c = 0; c < chunks; ++c) {
      const int here = eq_before[c];
      eq_before[c] = sum;
      sum += here;
    }
  }
  __syncthreads();
  const int gt = s_gt;
  for (int e = tid; e < n; e += kChunk) {
    if (ids[e] < 0 || order_key(vals[e]) != thr) continue;
    const int c = e / k;
    int rank = eq_before[c];
    if (rank >= need) continue;
    for (int m = c * k; m < (c + 1) * k; ++m)
      rank += ids[m] >= 0 && ids[m] < ids[e] && order_key(vals[m]) == thr;
    if (rank < need) cand[gt + rank] = e;
  }
  __syncthreads();
  // Best first, ties by id: each candidate's place is the number that beat it.
  if (tid < k) {
    if (tid < kk) {
      const int mine = ids[cand[tid]];
      const float lv = vals[cand[tid]];
      int rank = 0;
      for (int m = 0; m < kk; ++m) {
        const float o = vals[cand[m]];
        rank += o > lv || (o == lv && ids[cand[m]] < mine);
      }
      out.ids[r * k + rank] = mine;
      out.logits[r * k + rank] = lv;
    } else {
      out.ids[r * k + tid] = -1;
      out.logits[r * k + tid] = 0.0f;
    }
  }

  // The tempered weights' sum: each chunk's, moved from its best to the row's.
  const float inv_t = inv_ts[r];
  const double u01 = u01s[r];
  if (tid == 0) {
    out.sum_t[r] = 0.0;
    out.drawn[r] = -1;
  }
  if (!(inv_t > 0.0f)) return;
  const float shift = best * inv_t;
  auto chunk_weight = [&](int c) {
    return cs[c].best == -FLT_MAX
               ? 0.0
               : cs[c].sum_t * exp(static_cast<double>(cs[c].best * inv_t) - shift);
  };
  double total = 0.0;
  for (int c = tid; c < chunks; c += kChunk) total += chunk_weight(c);
  total = detail::block_reduce(total, detail::SumOp<double>{}, dscratch);
  if (tid == 0) out.sum_t[r] = total;
  if (!(u01 >= 0.0) || !(total > 0.0)) return;
  const double u = u01 * total;
  if (tid == 0) {  // the chunk u lands in (the last weighted one if rounding left u past all)
    double cum = 0.0;
    int pick = -1, last = -1;
    for (int c = 0; c < chunks && pick < 0; ++c) {
      const double w = chunk_weight(c);
      if (w > 0.0) last = c;
      if (w > 0.0 && u < cum + w) pick = c;
      if (pick < 0) cum += w;
    }
    if (pick < 0) {
      pick = last;
      cum -= chunk_weight(last);
    }
    s_chunk = pick;
    s_before = cum;
    s_pick = -1;
  }
  __syncthreads();
  // The walk through that chunk in id order: a thread per id.
  const int i = s_chunk * kChunk + tid;
  const float* row = logits + static_cast<size_t>(r) * vocab;
  const float p = i < listable ? expf(fmaxf(row[i] * inv_t - shift, -104.0f)) : 0.0f;
  double chunk_total = 0.0;
  const double pre = s_before + block_exclusive_scan(p, dscratch, chunk_total);
  if (p > 0.0f && pre <= u && u < pre + p) s_pick = i;
  int last = p > 0.0f ? i : -1;
  last = detail::block_reduce(last, [](int a, int b) { return a > b ? a : b; },
                              reinterpret_cast<int*>(dscratch));
  if (tid == 0) {
    // Rounding between the chunk sums and this walk can leave u past the chunk's weights: its
    // last weighted id; a chunk whose weights all underflowed here: the best id.
    int pick = s_pick >= 0 ? s_pick : last;
    if (pick < 0) pick = out.ids[r * k];
    out.drawn[r] = pick;
    out.drawn_logit[r] = row[pick];
  }
}

}  // namespace

size_t summary_scratch_bytes(int rows, int vocab, int k) {
  const size_t n = static_cast<size_t>(rows) * ((vocab + kChunk - 1) / kChunk);
  return n * (sizeof(ChunkStats) + static_cast<size_t>(k) * (sizeof(int) + sizeof(float)));
}

void summarize_logit_rows(const float* logits, int rows, int vocab, int listable, int k,
                          const float* inv_t, const double* u01, void* scratch,
                          LogitSummaries out, cudaStream_t stream) {
  if (rows <= 0) return;
  if (k < 1 || k > kMaxSummaryCandidates || listable < 1 || listable > vocab)
    throw CudaError("summarize_logit_rows: bad k or listable");
  const int chunks = (vocab + kChunk - 1) / kChunk;
  if (chunks > kMaxChunks)
    throw CudaError("summarize_logit_rows: a vocabulary over " +
                    std::to_string(kMaxChunks * kChunk) + " ids");
  const Scratch s = carve(scratch, rows, chunks, k);
  chunk_kernel<<<dim3(chunks, rows), kChunkThreads, 0, stream>>>(logits, vocab, listable, k,
                                                                  inv_t, chunks, s);
  merge_kernel<<<rows, kChunk, 0, stream>>>(logits, vocab, listable, k, inv_t, u01, chunks, s,
                                            out);
  check(cudaGetLastError(), "summarize_logit_rows");
}

}  // namespace xq::cuda
