// Paged causal attention of the CUDA engine: one block per (query row, head) walks the positions
// that row sees in chunks, with an online softmax in fp32 (CPU counterpart: the OnlineSoftmax of
// kernels/cpu/attention.h).
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/launch_util.cuh"

namespace xq::cuda {
namespace {

constexpr int kAttnThreads = 128;
constexpr int kChunk = 128;  // positions scored per step
constexpr int kMaxHeadDim = 256;
constexpr int kDimsPerThread = kMaxHeadDim / kAttnThreads;

// Per chunk: the K/V row offsets of its positions through the page table, scores (a warp per
// position), the block's max and the rescale of what came before, the weights exp(s - max) and
// their sum, then each thread folds the weighted V rows into its dimensions.
__global__ void __launch_bounds__(kAttnThreads)
    attention_kernel(const float* q, float* out, const int* row_seq, const AttnSeq* seqs,
                     const int* tables, KvPages kv, AttnParams p) {
  __shared__ float q_s[kMaxHeadDim];
  __shared__ float w_s[kChunk];
  __shared__ size_t off_s[kChunk];
  __shared__ float scratch[32];
  const int r = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
  const int lane = tid & 31, warp = tid >> 5, warps = kAttnThreads / 32;
  const int dim = p.head_dim;
  const AttnSeq s = seqs[row_seq[r]];
  const int pos = s.start_pos + (r - s.q_row);
  const int first = p.window > 0 ? max(0, pos - p.window + 1) : 0;
  const int kvh = h / (p.num_heads / p.num_kv_heads);
  const size_t q_at = (static_cast<size_t>(r) * p.num_heads + h) * dim;
  const int* table = tables + s.table;
  const half* k_head = kv.k + static_cast<size_t>(kvh) * dim;
  const half* v_head = kv.v + static_cast<size_t>(kvh) * dim;

  for (int d = tid; d < dim; d += kAttnThreads) q_s[d] = q[q_at + d];
  float acc[kDimsPerThread];
#pragma unroll
  for (int k = 0; k < kDimsPerThread; ++k) acc[k] = 0.0f;
  float m = -INFINITY, l = 0.0f;

  for (int c0 = first; c0 <= pos; c0 += kChunk) {
    const int len = min(kChunk, pos - c0 + 1);
    for (int j = tid; j < len; j += kAttnThreads) {
      const int at = c0 + j;
      off_s[j] = static_cast<size_t>(table[at / kPageRows]) * kv.page_stride +
                 static_cast<size_t>(at % kPageRows) * kv.row_stride;
    }
    __syncthreads();  // offsets (and q_s on the first chunk) visible to all
    for (int j = warp; j < len; j += warps) {
      const half* kr = k_head + off_s[j];
      float dot = 0.0f;
      for (int d = lane; d < dim; d += 32) dot += q_s[d] * __half2float(kr[d]);
      dot = detail::warp_reduce(dot, detail::SumOp<float>());
      if (lane == 0) {
        float sc = dot * p.scale;
        if (p.softcap > 0.0f) sc = p.softcap * tanhf(sc / p.softcap);
        w_s[j] = sc;
      }
    }
    __syncthreads();
    float cmax = -INFINITY;
    for (int j = tid; j < len; j += kAttnThreads) cmax = fmaxf(cmax, w_s[j]);
    cmax = detail::block_reduce(cmax, detail::MaxOp(), scratch);
    const float m_new = fmaxf(m, cmax);
    const float corr = m == -INFINITY ? 0.0f : expf(m - m_new);
    float psum = 0.0f;
    for (int j = tid; j < len; j += kAttnThreads) {
      const float e = expf(w_s[j] - m_new);
      w_s[j] = e;
      psum += e;
    }
    // The reduction's barriers also publish the weights just written.
    psum = detail::block_reduce(psum, detail::SumOp<float>(), scratch);
    l = l * corr + psum;
    m = m_new;
#pragma unroll
    for (int k = 0; k < kDimsPerThread; ++k) {
      const int d = tid + k * kAttnThreads;
      if (d < dim) {
        float a = acc[k] * corr;
        for (int j = 0; j < len; ++j) a += w_s[j] * __half2float(v_head[off_s[j] + d]);
        acc[k] = a;
      }
    }
    __syncthreads();  // the next chunk overwrites off_s and w_s
  }
  const float inv = 1.0f / l;
#pragma unroll
  for (int k = 0; k < kDimsPerThread; ++k) {
    const int d = tid + k * kAttnThreads;
    if (d < dim) out[q_at + d] = acc[k] * inv;
  }
}

}  // namespace

void attention(const float* q, float* out, int rows, const int* row_seq, const AttnSeq* seqs,
               const int* tables, KvPages kv, AttnParams p, cudaStream_t stream) {
  if (rows <= 0) return;
  if (p.head_dim <= 0 || p.head_dim > kMaxHeadDim) {
    throw CudaError("attention: head_dim must be in [1, " + std::to_string(kMaxHeadDim) +
                    "], got " + std::to_string(p.head_dim));
  }
  if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0) {
    throw CudaError("attention: num_heads (" + std::to_string(p.num_heads) +
                    ") must be a positive multiple of num_kv_heads (" +
                    std::to_string(p.num_kv_heads) + ")");
  }
  if (p.num_heads > 65535) throw CudaError("attention: more than 65535 heads");
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(p.num_heads));
  attention_kernel<<<grid, kAttnThreads, 0, stream>>>(q, out, row_seq, seqs, tables, kv, p);
  check(cudaGetLastError(), "attention");
}

}  // namespace xq::cuda
