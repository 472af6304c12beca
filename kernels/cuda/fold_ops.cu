// XQuant's folded values (engine/cache/xquant_cache.cpp does the same on the CPU): the value
// path of attention over cached X is out_h = (sum_p w_hp x_p) Wv_h^T + bv_h, exact, so V is never
// rematerialized: the softmax weights are written out, each head's weighted mean of the X rows
// is taken, and one batched matmul per KV head projects them.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/launch_util.cuh"

namespace xq::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxHeadDim = 256;
constexpr int kPairs = 8;   // (row, head) pairs one weighted_rows block accumulates
constexpr int kCols = 128;  // X columns one weighted_rows block covers

// The softmax weights in two launches, so that a decode step's few (row, head) pairs still fill
// the device: scores of kScoreChunk positions per block (a warp per position), then per (row,
// head) the exp and normalization in place; positions a row does not see get 0.
constexpr int kScoreChunk = 256;

struct ProbRow {
  int first, pos, len;  // the positions [first, pos] the row sees, of its sequence's len
  float* w;             // its weights, len of them
};
__device__ inline ProbRow prob_row(int r, int h, const int* row_seq, const AttnSeq* seqs,
                                   const AttnParams& p, const int* seq_probs, float* probs) {
  const int si = row_seq[r];
  const AttnSeq s = seqs[si];
  const int len = s.start_pos + s.n, pos = s.start_pos + (r - s.q_row);
  const int first = p.window > 0 ? max(0, pos - p.window + 1) : 0;
  float* w = probs + seq_probs[si] +
             (static_cast<size_t>(r - s.q_row) * p.num_heads + h) * static_cast<size_t>(len);
  return {first, pos, len, w};
}

__global__ void __launch_bounds__(kThreads)
    scores_kernel(const float* q, const int* row_seq, const AttnSeq* seqs, const int* tables,
                  KvPages kv, AttnParams p, const int* seq_probs, float* probs) {
  __shared__ float q_s[kMaxHeadDim];
  const int r = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
  const int lane = tid & 31, warp = tid >> 5, warps = kThreads / 32;
  const ProbRow pr = prob_row(r, h, row_seq, seqs, p, seq_probs, probs);
  const int* table = tables + seqs[row_seq[r]].table;
  const int lo = max(pr.first, static_cast<int>(blockIdx.z) * kScoreChunk);
  const int hi = min(pr.pos, static_cast<int>(blockIdx.z + 1) * kScoreChunk - 1);
  if (lo > hi) return;
  const int dim = p.head_dim;
  const int kvh = h / (p.num_heads / p.num_kv_heads);
  const half* k_head = kv.k + static_cast<size_t>(kvh) * dim;
  const size_t q_at = (static_cast<size_t>(r) * p.num_heads + h) * dim;
  for (int d = tid; d < dim; d += kThreads) q_s[d] = q[q_at + d];
  __syncthreads();
  for (int j = lo + warp; j <= hi; j += warps) {
    const half* kr = k_head + static_cast<size_t>(table[j / kPageRows]) * kv.page_stride +
                     static_cast<size_t>(j % kPageRows) * kv.row_stride;
    float dot = 0.0f;
    for (int d = lane; d < dim; d += 32) dot += q_s[d] * __half2float(kr[d]);
    dot = detail::warp_reduce(dot, detail::SumOp<float>());
    float sc = dot * p.scale;
    if (p.softcap > 0.0f) sc = p.softcap * tanhf(sc / p.softcap);
    if (lane == 0) pr.w[j] = sc;
  }
}

__global__ void __launch_bounds__(kThreads)
    softmax_kernel(const int* row_seq, const AttnSeq* seqs, AttnParams p, const int* seq_probs,
                   float* probs) {
  __shared__ float scratch[32];
  const int r = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
  const ProbRow pr = prob_row(r, h, row_seq, seqs, p, seq_probs, probs);
  float m = -INFINITY;
  for (int j = pr.first + tid; j <= pr.pos; j += kThreads) m = fmaxf(m, pr.w[j]);
  m = detail::block_reduce(m, detail::MaxOp(), scratch);
  float sum = 0.0f;
  for (int j = pr.first + tid; j <= pr.pos; j += kThreads) {
    const float e = expf(pr.w[j] - m);
    pr.w[j] = e;
    sum += e;
  }
  sum = detail::block_reduce(sum, detail::SumOp<float>(), scratch);
  const float inv = 1.0f / sum;
  for (int j = tid; j < pr.len; j += kThreads)
    pr.w[j] = (j >= pr.first && j <= pr.pos) ? pr.w[j] * inv : 0.0f;
}

// y[h][r][c] = sum_p w(r, h, p) x[x_row(seq) + p][c] for kPairs (row, head) pairs of one
// sequence and kCols columns: X is read once per block, the weights come through shared memory.
__global__ void __launch_bounds__(kCols)
    weighted_rows_kernel(const float* probs, const int* seq_probs, const AttnSeq* seqs,
                         const int* seq_x_row, const bf16* x, int width, int x_stride,
                         int num_heads, int rows, bf16* y) {
  __shared__ float w_s[kPairs][kCols];
  const int si = blockIdx.x, tid = threadIdx.x;
  const AttnSeq s = seqs[si];
  const int len = s.start_pos + s.n, pairs = s.n * num_heads;
  const int pair0 = blockIdx.z * kPairs;
  if (pair0 >= pairs) return;
  const int np = min(kPairs, pairs - pair0);
  const int c = blockIdx.y * kCols + tid;
  const float* w = probs + seq_probs[si] + static_cast<size_t>(pair0) * len;
  const bf16* xs = x + static_cast<size_t>(seq_x_row[si]) * x_stride;
  float acc[kPairs];
#pragma unroll
  for (int k = 0; k < kPairs; ++k) acc[k] = 0.0f;
  for (int p0 = 0; p0 < len; p0 += kCols) {
    const int n = min(kCols, len - p0);
    for (int k = 0; k < np; ++k)
      w_s[k][tid] = tid < n ? w[static_cast<size_t>(k) * len + p0 + tid] : 0.0f;
    __syncthreads();
    if (c < width) {
      for (int j = 0; j < n; ++j) {
        const float xv = __bfloat162float(xs[static_cast<size_t>(p0 + j) * x_stride + c]);
#pragma unroll
        for (int k = 0; k < kPairs; ++k) acc[k] += w_s[k][j] * xv;
      }
    }
    __syncthreads();
  }
  if (c >= width) return;
  for (int k = 0; k < np; ++k) {
    const int pair = pair0 + k;
    const int r = s.q_row + pair / num_heads, h = pair % num_heads;
    y[(static_cast<size_t>(h) * rows + r) * width + c] = __float2bfloat16_rn(acc[k]);
  }
}

// out[r][h * dim + d] = t[h][r][d] + bias[(h / group) * dim + d].
__global__ void heads_to_rows_kernel(const float* t, int rows, int heads, int dim, int group,
                                     const float* bias, float* out) {
  const size_t n = static_cast<size_t>(rows) * heads * dim;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int d = static_cast<int>(i % dim);
    const size_t hr = i / dim;
    const int r = static_cast<int>(hr % rows), h = static_cast<int>(hr / rows);
    float v = t[i];
    if (bias) v += bias[static_cast<size_t>(h / group) * dim + d];
    out[(static_cast<size_t>(r) * heads + h) * dim + d] = v;
  }
}

__global__ void write_rows_bf16_kernel(const bf16* x, int n, int dim, RowMap map, bf16* base,
                                       size_t page_stride) {
  const int i = blockIdx.x;
  const int page = map.page[i];
  if (page < 0) return;
  bf16* dst =
      base + static_cast<size_t>(page) * page_stride + static_cast<size_t>(map.slot[i]) * dim;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) dst[c] = x[static_cast<size_t>(i) * dim + c];
}

}  // namespace

void attention_probs(const float* q, int rows, const int* row_seq, const AttnSeq* seqs,
                     const int* tables, KvPages kv, AttnParams p, const int* seq_probs,
                     float* probs, int max_len, cudaStream_t stream) {
  if (rows <= 0 || max_len <= 0) return;
  if (p.head_dim <= 0 || p.head_dim > kMaxHeadDim || p.num_kv_heads <= 0 ||
      p.num_heads % p.num_kv_heads != 0)
    throw CudaError("attention_probs: bad head geometry");
  const unsigned chunks = static_cast<unsigned>((max_len + kScoreChunk - 1) / kScoreChunk);
  scores_kernel<<<dim3(rows, p.num_heads, chunks), kThreads, 0, stream>>>(
      q, row_seq, seqs, tables, kv, p, seq_probs, probs);
  softmax_kernel<<<dim3(rows, p.num_heads), kThreads, 0, stream>>>(row_seq, seqs, p, seq_probs,
                                                                    probs);
  check(cudaGetLastError(), "attention_probs");
}

void weighted_rows(const float* probs, const int* seq_probs, const AttnSeq* seqs, int num_seqs,
                   int max_pairs, const int* seq_x_row, const bf16* x, int width, int x_stride,
                   int num_heads, int rows, bf16* y, cudaStream_t stream) {
  if (num_seqs <= 0) return;
  const dim3 grid(static_cast<unsigned>(num_seqs),
                  static_cast<unsigned>((width + kCols - 1) / kCols),
                  static_cast<unsigned>((max_pairs + kPairs - 1) / kPairs));
  weighted_rows_kernel<<<grid, kCols, 0, stream>>>(probs, seq_probs, seqs, seq_x_row, x, width,
                                                   x_stride, num_heads, rows, y);
  check(cudaGetLastError(), "weighted_rows");
}

void heads_to_rows(const float* t, int rows, int heads, int dim, int group, const float* bias,
                   float* out, cudaStream_t stream) {
  const size_t n = static_cast<size_t>(rows) * heads * dim;
  if (n == 0) return;
  heads_to_rows_kernel<<<detail::grid_for(n), detail::kThreads, 0, stream>>>(t, rows, heads, dim,
                                                                             group, bias, out);
  check(cudaGetLastError(), "heads_to_rows");
}

void write_rows_bf16(const bf16* x, int n, int dim, RowMap map, bf16* base, size_t page_stride,
                     cudaStream_t stream) {
  if (n <= 0) return;
  write_rows_bf16_kernel<<<n, 128, 0, stream>>>(x, n, dim, map, base, page_stride);
  check(cudaGetLastError(), "write_rows_bf16");
}

namespace {

// y[n, out] (of type yt) = x[n, in] (rows ldx apart) w[out, in]^T, fp32 accumulation.
void gemm_strided(cublasHandle_t handle, const bf16* x, int ldx, const bf16* w, void* y,
                  cudaDataType_t yt, int n, int in, int out, const char* what) {
  if (n <= 0) return;
  const float one = 1.0f, zero = 0.0f;
  check(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w, CUDA_R_16BF, in, x,
                     CUDA_R_16BF, ldx, &zero, y, yt, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        what);
}

}  // namespace

void matmul_nt_strided(cublasHandle_t handle, const bf16* x, int ldx, const bf16* w, float* y,
                       int n, int in, int out) {
  gemm_strided(handle, x, ldx, w, y, CUDA_R_32F, n, in, out, "matmul_nt_strided");
}

void matmul_nt_strided(cublasHandle_t handle, const bf16* x, int ldx, const bf16* w, bf16* y,
                       int n, int in, int out) {
  gemm_strided(handle, x, ldx, w, y, CUDA_R_16BF, n, in, out, "matmul_nt_strided (bf16 out)");
}

void matmul_nt_batched(cublasHandle_t handle, const bf16* x, const bf16* w, float* y, int n, int in,
                       int out, int batch, size_t x_stride, size_t w_stride, size_t y_stride) {
  if (n <= 0 || batch <= 0) return;
  const float one = 1.0f, zero = 0.0f;
  check(cublasGemmStridedBatchedEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w,
                                   CUDA_R_16BF, in, static_cast<long long>(w_stride), x,
                                   CUDA_R_16BF, in, static_cast<long long>(x_stride), &zero, y,
                                   CUDA_R_32F, out, static_cast<long long>(y_stride), batch,
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "matmul_nt_batched");
}

}  // namespace xq::cuda
