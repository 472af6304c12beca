// Split-context paged attention over the fp16 cache, and the merge of splits (decode_ops.h). A
// block takes one query row, one KV head and one split: each tile's K and V rows are staged in
// shared memory with every load issued at once (16-byte loads where the pages allow), and each
// row is scored against every query head of the GQA group: with tensor cores (the group's heads
// as the rows of a 16-row fp16 tile: Q Kᵀ and P V as WMMA products, fp32 accumulation), or on
// the CUDA cores in fp32 where the head size is not a multiple of 16.
#include <mma.h>

#include <algorithm>
#include <type_traits>

#include "kernels/cuda/decode_ops.h"
#include "kernels/cuda/split_util.cuh"

namespace xq::cuda {
namespace {

using namespace detail;

constexpr int kTile = 64;  // positions per pass
constexpr int kMaxHeadDim = 256;

// Shared memory: the tile's K and V rows [kTile][D] (fp16), q[G][D], p[G][kTile],
// m/l/corr[kMaxGroup], partial sums red[token lanes][G][D].
size_t paged_smem_bytes(int group, int dim) {
  const int pairs = dim / 2, lanes = kSplitThreads / pairs;
  return 2 * sizeof(half) * kTile * static_cast<size_t>(dim) +
         sizeof(float) * (static_cast<size_t>(group) * dim + group * kTile + 3 * kMaxGroup +
                          static_cast<size_t>(lanes) * group * dim);
}

// Copies the tile's rows [c0, c0 + len) of K and V (head kvh) into k_s, v_s, VEC halves per load.
template <int VEC>
__device__ void stage_tile(const int* table, const KvPages& kv, int kvh, int D, int c0, int len,
                           half* k_s, half* v_s) {
  using Vec = typename std::conditional<VEC == 8, uint4, uint32_t>::type;
  const int vecs = D / VEC;
  for (int e = threadIdx.x; e < len * vecs; e += kSplitThreads) {
    const int j = e / vecs, c = (e % vecs) * VEC, at = c0 + j;
    const size_t off = static_cast<size_t>(table[at / kPageRows]) * kv.page_stride +
                       static_cast<size_t>(at % kPageRows) * kv.row_stride +
                       static_cast<size_t>(kvh) * D + c;
    *reinterpret_cast<Vec*>(k_s + j * D + c) = *reinterpret_cast<const Vec*>(kv.k + off);
    *reinterpret_cast<Vec*>(v_s + j * D + c) = *reinterpret_cast<const Vec*>(kv.v + off);
  }
}

template <int GM, int VEC>
__global__ void __launch_bounds__(kSplitThreads)
    paged_attention_kernel(const float* q, const int* row_seq, const AttnSeq* seqs,
                           const int* tables, KvPages kv, AttnParams p, SplitPartials out) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int r = blockIdx.z, kvh = blockIdx.y, split = blockIdx.x;
  const int D = p.head_dim, G = p.num_heads / p.num_kv_heads, H = p.num_heads;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int pairs = D / 2, lanes = kSplitThreads / pairs, tl = tid / pairs, dp = tid % pairs;
  half* k_s = reinterpret_cast<half*>(smem);
  half* v_s = k_s + kTile * D;
  float* q_s = reinterpret_cast<float*>(v_s + kTile * D);
  float* p_s = q_s + G * D;
  float* m_s = p_s + G * kTile;
  float* l_s = m_s + kMaxGroup;
  float* corr_s = l_s + kMaxGroup;
  float* red_s = corr_s + kMaxGroup;

  const AttnSeq s = seqs[row_seq[r]];
  const int pos = s.start_pos + (r - s.q_row);
  const int first = p.window > 0 ? max(0, pos - p.window + 1) : 0;
  const SplitRange rg = split_range(first, pos + 1, split, out.splits, kTile);
  const int* table = tables + s.table;

  for (int e = tid; e < G * D; e += kSplitThreads)
    q_s[e] = q[(static_cast<size_t>(r) * H + kvh * G) * D + e];
  if (tid < kMaxGroup) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.0f;
  }
  float acc[GM][2];
#pragma unroll
  for (int g = 0; g < GM; ++g) acc[g][0] = acc[g][1] = 0.0f;

  for (int c0 = rg.begin; c0 < rg.end; c0 += kTile) {
    const int len = min(kTile, rg.end - c0);
    stage_tile<VEC>(table, kv, kvh, D, c0, len, k_s, v_s);
    __syncthreads();
    // Scores: a warp per position, lanes over half2 pairs of dimensions, all heads at once.
    for (int j = warp; j < len; j += kSplitWarps) {
      const half2* kr = reinterpret_cast<const half2*>(k_s + j * D);
      float dot[GM];
#pragma unroll
      for (int g = 0; g < GM; ++g) dot[g] = 0.0f;
      for (int e = lane; e < pairs; e += 32) {
        const float2 k2 = __half22float2(kr[e]);
#pragma unroll
        for (int g = 0; g < GM; ++g) {
          if (g < G) dot[g] += q_s[g * D + 2 * e] * k2.x + q_s[g * D + 2 * e + 1] * k2.y;
        }
      }
#pragma unroll
      for (int g = 0; g < GM; ++g) {
        if (g >= G) break;
        const float d = warp_reduce(dot[g], SumOp<float>());
        if (lane == 0) p_s[g * kTile + j] = attn_score(d, p.scale, p.softcap);
      }
    }
    __syncthreads();
    softmax_tile(p_s, kTile, len, G, m_s, l_s, corr_s);
    __syncthreads();
    if (tl < lanes) {
#pragma unroll
      for (int g = 0; g < GM; ++g) {
        if (g < G) acc[g][0] *= corr_s[g], acc[g][1] *= corr_s[g];
      }
      for (int j = tl; j < len; j += lanes) {
        const float2 v2 = __half22float2(reinterpret_cast<const half2*>(v_s + j * D)[dp]);
#pragma unroll
        for (int g = 0; g < GM; ++g) {
          if (g < G) {
            const float w = p_s[g * kTile + j];
            acc[g][0] += w * v2.x;
            acc[g][1] += w * v2.y;
          }
        }
      }
    }
    __syncthreads();  // the next tile overwrites k_s, v_s and p_s
  }
  if (tl < lanes) {
#pragma unroll
    for (int g = 0; g < GM; ++g) {
      if (g < G) {
        red_s[(tl * G + g) * D + 2 * dp] = acc[g][0];
        red_s[(tl * G + g) * D + 2 * dp + 1] = acc[g][1];
      }
    }
  }
  __syncthreads();
  for (int e = tid; e < G * D; e += kSplitThreads) {
    float v = 0.0f;
    for (int t = 0; t < lanes; ++t) v += red_s[t * G * D + e];
    const int g = e / D, d = e % D;
    out.acc[partial_index(r, H, kvh * G + g, out.splits, split) * D + d] = v;
  }
  if (tid < G) {
    const size_t at = partial_index(r, H, kvh * G + tid, out.splits, split) * 2;
    out.ml[at] = m_s[tid];
    out.ml[at + 1] = l_s[tid];
  }
}

constexpr int kMmaRows = 16;  // the query heads of a GQA group, padded to one WMMA tile

// Shared memory of the tensor-core kernel: q [16][D] (fp16), the tile's K and V rows [kTile][D]
// (fp16), scores [16][kTile] (fp32) and their exponentials (fp16), the output accumulator
// [16][D] (fp32), and m/l/corr per row.
size_t mma_smem_bytes(int dim) {
  const size_t d = static_cast<size_t>(dim);
  return sizeof(half) * (kMmaRows * d + 2 * kTile * d + kMmaRows * kTile) +
         sizeof(float) * (kMmaRows * kTile + kMmaRows * d + 3 * kMmaRows);
}

template <int VEC>
__global__ void __launch_bounds__(kSplitThreads)
    paged_attention_mma_kernel(const float* q, const int* row_seq, const AttnSeq* seqs,
                               const int* tables, KvPages kv, AttnParams p, SplitPartials out) {
  using namespace nvcuda;
  extern __shared__ __align__(128) unsigned char smem[];
  const int r = blockIdx.z, kvh = blockIdx.y, split = blockIdx.x;
  const int D = p.head_dim, G = p.num_heads / p.num_kv_heads, H = p.num_heads;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  half* q_h = reinterpret_cast<half*>(smem);
  half* k_s = q_h + kMmaRows * D;
  half* v_s = k_s + kTile * D;
  half* p_h = v_s + kTile * D;
  float* s_f = reinterpret_cast<float*>(p_h + kMmaRows * kTile);
  float* o_f = s_f + kMmaRows * kTile;
  float* m_s = o_f + kMmaRows * D;
  float* l_s = m_s + kMmaRows;

  const AttnSeq s = seqs[row_seq[r]];
  const int pos = s.start_pos + (r - s.q_row);
  const int first = p.window > 0 ? max(0, pos - p.window + 1) : 0;
  const SplitRange rg = split_range(first, pos + 1, split, out.splits, kTile);
  const int* table = tables + s.table;

  const float* qr = q + (static_cast<size_t>(r) * H + kvh * G) * D;
  for (int e = tid; e < kMmaRows * D; e += kSplitThreads) {
    q_h[e] = __float2half_rn(e < G * D ? qr[e] : 0.0f);
    o_f[e] = 0.0f;
  }
  if (tid < kMmaRows) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.0f;
  }
  for (int c0 = rg.begin; c0 < rg.end; c0 += kTile) {
    const int len = min(kTile, rg.end - c0);
    stage_tile<VEC>(table, kv, kvh, D, c0, len, k_s, v_s);
    // Rows past the split's end: zero weights must not meet stale (or never written) values.
    for (int e = len * D + tid; e < kTile * D; e += kSplitThreads) v_s[e] = __float2half_rn(0.0f);
    __syncthreads();
    // Scores [16][kTile]: a warp per 16 positions.
    if (warp < kTile / 16) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int k = 0; k < D; k += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::col_major> b;
        wmma::load_matrix_sync(a, q_h + k, D);
        wmma::load_matrix_sync(b, k_s + warp * 16 * D + k, D);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(s_f + warp * 16, acc, kTile, wmma::mem_row_major);
    }
    __syncthreads();
    // Online softmax per head (a warp per row); the accumulator's row takes the correction.
    for (int g = warp; g < kMmaRows; g += kSplitWarps) {
      half* pg = p_h + g * kTile;
      if (g >= G) {
        for (int j = lane; j < kTile; j += 32) pg[j] = __float2half_rn(0.0f);
        continue;
      }
      float* sg = s_f + g * kTile;
      float mx = -INFINITY;
      for (int j = lane; j < kTile; j += 32) {
        const float sc = j < len ? attn_score(sg[j], p.scale, p.softcap) : -INFINITY;
        sg[j] = sc;
        mx = fmaxf(mx, sc);
      }
      mx = warp_reduce(mx, MaxOp());
      const float m_old = m_s[g], m_new = fmaxf(m_old, mx);
      float sum = 0.0f;
      for (int j = lane; j < kTile; j += 32) {
        const half e = __float2half_rn(m_new == -INFINITY ? 0.0f : expf(sg[j] - m_new));
        pg[j] = e;
        sum += __half2float(e);  // the weights P V uses
      }
      sum = warp_reduce(sum, SumOp<float>());
      const float c = m_new == -INFINITY ? 1.0f : expf(m_old - m_new);
      for (int d = lane; d < D; d += 32) o_f[g * D + d] *= c;
      if (lane == 0) {
        l_s[g] = l_s[g] * c + sum;
        m_s[g] = m_new;
      }
    }
    __syncthreads();
    // O [16][D] += P [16][kTile] V [kTile][D]: a warp per 16 columns.
    for (int nt = warp; nt < D / 16; nt += kSplitWarps) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, o_f + nt * 16, D, wmma::mem_row_major);
      for (int k = 0; k < kTile; k += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::row_major> b;
        wmma::load_matrix_sync(a, p_h + k, kTile);
        wmma::load_matrix_sync(b, v_s + k * D + nt * 16, D);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(o_f + nt * 16, acc, D, wmma::mem_row_major);
    }
    __syncthreads();  // the next tile overwrites k_s, v_s, s_f and p_h
  }
  for (int e = tid; e < G * D; e += kSplitThreads) {
    const int g = e / D, d = e % D;
    out.acc[partial_index(r, H, kvh * G + g, out.splits, split) * D + d] = o_f[e];
  }
  if (tid < G) {
    const size_t at = partial_index(r, H, kvh * G + tid, out.splits, split) * 2;
    out.ml[at] = m_s[tid];
    out.ml[at + 1] = l_s[tid];
  }
}

template <int VEC>
void launch_paged_mma(const float* q, int rows, const int* row_seq, const AttnSeq* seqs,
                      const int* tables, KvPages kv, AttnParams p, SplitPartials out,
                      cudaStream_t stream) {
  const size_t smem = mma_smem_bytes(p.head_dim);
  static bool raised = false;
  if (!raised) {
    check(cudaFuncSetAttribute(paged_attention_mma_kernel<VEC>,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, 160 * 1024),
          "paged_attention_mma smem");
    raised = true;
  }
  const dim3 grid(out.splits, p.num_kv_heads, rows);
  paged_attention_mma_kernel<VEC>
      <<<grid, kSplitThreads, smem, stream>>>(q, row_seq, seqs, tables, kv, p, out);
}

__global__ void combine_kernel(SplitPartials in, int rows, int heads, int width, float* out_f32,
                               bf16* out_bf16) {
  __shared__ float w_s[kMaxSplits];
  __shared__ float inv_s;
  const int r = blockIdx.x, h = blockIdx.y, S = in.splits;
  const size_t base = partial_index(r, heads, h, S, 0);
  if (threadIdx.x == 0) {
    float m = -INFINITY;
    for (int s = 0; s < S; ++s) m = fmaxf(m, in.ml[(base + s) * 2]);
    float l = 0.0f;
    for (int s = 0; s < S; ++s) {
      const float ms = in.ml[(base + s) * 2];
      const float w = ms == -INFINITY ? 0.0f : expf(ms - m);
      w_s[s] = w;
      l += w * in.ml[(base + s) * 2 + 1];
    }
    inv_s = l > 0.0f ? 1.0f / l : 0.0f;
  }
  __syncthreads();
  const float inv = inv_s;
  for (int c = threadIdx.x; c < width; c += blockDim.x) {
    float v = 0.0f;
    for (int s = 0; s < S; ++s) {
      if (w_s[s] != 0.0f) v += w_s[s] * in.acc[(base + s) * width + c];
    }
    v *= inv;
    if (out_f32) {
      out_f32[(static_cast<size_t>(r) * heads + h) * width + c] = v;
    } else {
      out_bf16[(static_cast<size_t>(h) * rows + r) * width + c] = __float2bfloat16_rn(v);
    }
  }
}

template <int GM, int VEC>
void launch_paged(const float* q, int rows, const int* row_seq, const AttnSeq* seqs,
                  const int* tables, KvPages kv, AttnParams p, SplitPartials out,
                  cudaStream_t stream) {
  const size_t smem = paged_smem_bytes(p.num_heads / p.num_kv_heads, p.head_dim);
  static bool raised = false;
  if (!raised) {
    check(cudaFuncSetAttribute(paged_attention_kernel<GM, VEC>,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, 160 * 1024),
          "paged_attention smem");
    raised = true;
  }
  const dim3 grid(out.splits, p.num_kv_heads, rows);
  paged_attention_kernel<GM, VEC>
      <<<grid, kSplitThreads, smem, stream>>>(q, row_seq, seqs, tables, kv, p, out);
}

template <int VEC>
void dispatch_group(const float* q, int rows, const int* row_seq, const AttnSeq* seqs,
                    const int* tables, KvPages kv, AttnParams p, SplitPartials out,
                    cudaStream_t stream) {
  const int G = p.num_heads / p.num_kv_heads;
  if (G <= 1)
    launch_paged<1, VEC>(q, rows, row_seq, seqs, tables, kv, p, out, stream);
  else if (G <= 2)
    launch_paged<2, VEC>(q, rows, row_seq, seqs, tables, kv, p, out, stream);
  else if (G <= 4)
    launch_paged<4, VEC>(q, rows, row_seq, seqs, tables, kv, p, out, stream);
  else if (G <= 8)
    launch_paged<8, VEC>(q, rows, row_seq, seqs, tables, kv, p, out, stream);
  else
    launch_paged<16, VEC>(q, rows, row_seq, seqs, tables, kv, p, out, stream);
}

}  // namespace

int choose_splits(int rows, int kv_heads, int max_positions, int min_positions, int cap) {
  static const int sms = [] {
    int dev = 0, n = 132;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      cudaGetLastError();
      n = 132;
    }
    return n;
  }();
  const long blocks = std::max(1L, static_cast<long>(rows) * kv_heads);
  long s = (2L * sms + blocks - 1) / blocks;
  s = std::min<long>(s, std::max(1, max_positions / std::max(1, min_positions)));
  return static_cast<int>(std::clamp<long>(s, 1, std::min(cap, kMaxSplits)));
}

size_t split_partials_floats(int rows, int heads, int splits, int width) {
  return static_cast<size_t>(rows) * heads * splits * width;
}

bool paged_attention_supported(const AttnParams& p) {
  return p.head_dim > 0 && p.head_dim % 2 == 0 && p.head_dim <= kMaxHeadDim && p.num_kv_heads > 0 &&
         p.num_heads % p.num_kv_heads == 0 && p.num_heads / p.num_kv_heads <= kMaxGroup;
}

bool paged_attention_tensor_cores(const AttnParams& p) {
  return paged_attention_supported(p) && p.head_dim % 16 == 0;
}

void paged_attention_splits(const float* q, int rows, const int* row_seq, const AttnSeq* seqs,
                            const int* tables, KvPages kv, AttnParams p, SplitPartials out,
                            cudaStream_t stream, bool tensor_cores) {
  if (rows <= 0) return;
  if (!paged_attention_supported(p))
    throw CudaError("paged_attention_splits: head_dim " + std::to_string(p.head_dim) +
                    " or group of " + std::to_string(p.num_heads) + "/" +
                    std::to_string(p.num_kv_heads) + " heads not supported");
  if (out.splits < 1 || out.splits > kMaxSplits || rows > 65535)
    throw CudaError("paged_attention_splits: splits must be in [1, 64], rows <= 65535");
  // 16-byte loads when every row start (page, slot, head) is 16-byte aligned, half2 otherwise.
  const bool wide = p.head_dim % 8 == 0 && kv.row_stride % 8 == 0 && kv.page_stride % 8 == 0 &&
                    reinterpret_cast<uintptr_t>(kv.k) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(kv.v) % 16 == 0;
  if (tensor_cores && paged_attention_tensor_cores(p)) {
    if (wide)
      launch_paged_mma<8>(q, rows, row_seq, seqs, tables, kv, p, out, stream);
    else
      launch_paged_mma<2>(q, rows, row_seq, seqs, tables, kv, p, out, stream);
  } else if (wide) {
    dispatch_group<8>(q, rows, row_seq, seqs, tables, kv, p, out, stream);
  } else {
    dispatch_group<2>(q, rows, row_seq, seqs, tables, kv, p, out, stream);
  }
  check(cudaGetLastError(), "paged_attention_splits");
}

void attention_combine(SplitPartials in, int rows, int heads, int width, float* out_f32,
                       bf16* out_bf16, cudaStream_t stream) {
  if (rows <= 0) return;
  if ((out_f32 == nullptr) == (out_bf16 == nullptr))
    throw CudaError("attention_combine: exactly one of out_f32 and out_bf16");
  if (in.splits < 1 || in.splits > kMaxSplits)
    throw CudaError("attention_combine: splits must be in [1, 64]");
  const dim3 grid(rows, heads);
  combine_kernel<<<grid, 128, 0, stream>>>(in, rows, heads, width, out_f32, out_bf16);
  check(cudaGetLastError(), "attention_combine");
}

}  // namespace xq::cuda
