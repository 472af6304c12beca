// Split-context paged attention over the fp16 cache, and the merge of splits (decode_ops.h). A
// block takes one query row, one KV head and one split: each tile's K and V rows are staged in
// shared memory with every load issued at once (16-byte loads where the pages allow), and each
// row is scored against every query head of the GQA group on the CUDA cores in fp32. Head sizes
// that are a multiple of 16 go to the tensor-core kernel (paged_attention_mma.cu) unless asked
// otherwise.
#include <algorithm>
#include <type_traits>

#include "kernels/cuda/decode_ops.h"
#include "kernels/cuda/page_tiles.cuh"
#include "kernels/cuda/paged_attention_mma.h"
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

  const RowSplit rs = row_split(row_seq, seqs, tables, p, r, split, out.splits, kTile);
  const SplitRange rg = rs.rg;
  const int* table = rs.table;

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
    stage_tile<VEC>(table, kv, kvh, D, c0, len, k_s, v_s, D);
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

__global__ void combine_kernel(SplitPartials in, int rows, int heads, int width, float* out_f32,
                               bf16* out_bf16, bool bf16_rows) {
  detail::pdl_wait();
  detail::pdl_launch_dependents();
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
      const size_t at = bf16_rows ? (static_cast<size_t>(r) * heads + h) * width + c
                                  : (static_cast<size_t>(h) * rows + r) * width + c;
      out_bf16[at] = __float2bfloat16_rn(v);
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
                            cudaStream_t stream, bool tensor_cores,
                            const RopeAngles* past_rope, const FoldRows* fold) {
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
                    reinterpret_cast<uintptr_t>(kv.v) % 16 == 0 &&
                    (!fold || (fold->row_stride % 8 == 0 && fold->page_stride % 8 == 0 &&
                               fold->col0 % 8 == 0 &&
                               reinterpret_cast<uintptr_t>(fold->x) % 16 == 0));
  if (tensor_cores && paged_attention_tensor_cores(p)) {
    paged_attention_mma(q, rows, row_seq, seqs, tables, kv, p, out, wide, past_rope, fold, stream);
  } else if (past_rope || fold) {
    throw CudaError("paged_attention_splits: past_rope and fold need the tensor-core kernel");
  } else if (wide) {
    dispatch_group<8>(q, rows, row_seq, seqs, tables, kv, p, out, stream);
  } else {
    dispatch_group<2>(q, rows, row_seq, seqs, tables, kv, p, out, stream);
  }
  check(cudaGetLastError(), "paged_attention_splits");
}

void attention_combine(SplitPartials in, int rows, int heads, int width, float* out_f32,
                       bf16* out_bf16, cudaStream_t stream, bool bf16_rows) {
  if (rows <= 0) return;
  if ((out_f32 == nullptr) == (out_bf16 == nullptr))
    throw CudaError("attention_combine: exactly one of out_f32 and out_bf16");
  if (in.splits < 1 || in.splits > kMaxSplits)
    throw CudaError("attention_combine: splits must be in [1, 64]");
  const dim3 grid(rows, heads);
  detail::launch_pdl(combine_kernel, grid, 128, 0, stream, in, rows, heads, width, out_f32,
                     out_bf16, bf16_rows);
  check(cudaGetLastError(), "attention_combine");
}

}  // namespace xq::cuda
