// The CUDA engine's kernels (sm_90a), one launcher per op. Every pointer is device memory, every
// launch is asynchronous on `stream` and checked (CudaError on a launch or cuBLAS failure). Each
// op has a CPU reference in kernels/cpu or engine/cache (named per op) that the GPU tests compare
// against.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/row_layout.h"

namespace xq::cuda {

using bf16 = __nv_bfloat16;

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws CudaError("<what>: <cuda error string>") unless e == cudaSuccess.
void check(cudaError_t e, const char* what);
void check(cublasStatus_t s, const char* what);

// ---- dense ops (CPU references in kernels/cpu/ops.h, rope.h) ----

// h[r, :] = float(table[tokens[r], :]) * scale.
void embed(const bf16* table, const int* tokens, int rows, int hidden, float scale, float* h,
           cudaStream_t stream);

// y = x / rms(x) * w (one_plus: * (1 + w)) over each row of `dim` (eps inside the root, as
// rmsnorm in kernels/cpu/ops.h). y may equal x. y_bf16, when non-null, gets a bf16 copy of y.
void rmsnorm(const float* x, const float* w, int rows, int dim, float eps, bool one_plus, float* y,
             bf16* y_bf16, cudaStream_t stream);
// x += res, then y = rmsnorm(x) as above, in one pass (y must not alias res).
void add_rmsnorm(float* x, const float* res, const float* w, int rows, int dim, float eps,
                 bool one_plus, float* y, bf16* y_bf16, cudaStream_t stream);

// y[r, j] += bias[j] over rows x dim.
void add_bias(float* y, const float* bias, int rows, int dim, cudaStream_t stream);

// y[i] += x[i].
void add(float* y, const float* x, size_t n, cudaStream_t stream);

// RoPE's angles: inv_freq (head_dim / 2 entries), and optionally their cosines and sines for the
// positions [0, table_positions) from rope_table, which the kernels then read instead of computing
// (the same values: the table is made by the same arithmetic).
struct RopeAngles {
  const double* inv_freq = nullptr;
  const float2* table = nullptr;  // [table_positions, head_dim / 2] (cos, sin), or null
  int table_positions = 0;
};

// table[p, i] = (cos, sin) of position p's angle i, for p < positions: what rope() computes.
void rope_table(const double* inv_freq, int head_dim, int positions, float2* table,
                cudaStream_t stream);

// RoPE, rotate-half layout (kernels/cpu/rope.h rope_apply): rows r at position pos[r] (rows with
// pos[r] < 0 are left alone), `heads` heads of head_dim each, rows `row_stride` floats apart.
// The angle pos * inv_freq is taken in double (as on the CPU) and reduced to [-pi, pi] before
// an fp32 sine and cosine.
void rope(float* x, int rows, int heads, int head_dim, int row_stride, const int* pos,
          RopeAngles angles, cudaStream_t stream);
// The same out of place into fp16 rows (same layout; rows at pos < 0 converted unrotated): the
// rematerialized K of XQuant goes from its matmul to the attention's fp16 workspace in one pass.
void rope_to_half(const float* x, int rows, int heads, int head_dim, int row_stride,
                  const int* pos, RopeAngles angles, half* out, cudaStream_t stream);
// From bf16 rows (a matmul's bf16 output): half the bytes read.
void rope_to_half(const bf16* x, int rows, int heads, int head_dim, int row_stride,
                  const int* pos, RopeAngles angles, half* out, cudaStream_t stream);

// out[r, i] = act(gate[r * stride + i]) * up[r * stride + i] for i < width, act = gelu_tanh
// (gelu) or silu; out is [rows, width] bf16 (the next matmul's operand). stride = 2 width with
// up = gate + width reads the halves of one stacked gate-up product.
void gated_act(const float* gate, const float* up, int rows, int width, int stride, bool gelu,
               bf16* out, cudaStream_t stream);

// The columns of a stacked product y[rows, q + 2 kv] apart: q, k and v rows of widths q, kv, kv,
// each plus its bias where one is given (null: none).
void split_qkv(const float* y, int rows, int q, int kv, const float* bq, const float* bk,
               const float* bv, float* out_q, float* out_k, float* out_v, cudaStream_t stream);
// split_qkv, then rope() of the q heads (q / head_dim of them) and the k heads, in one pass:
// for models without q/k norms.
void qkv_rope(const float* y, int rows, int q, int kv, int head_dim, const float* bq,
              const float* bk, const float* bv, const int* pos, RopeAngles angles, float* out_q,
              float* out_k, float* out_v, cudaStream_t stream);

// x = cap * tanh(x / cap); cap <= 0 does nothing.
void softcap(float* x, size_t n, float cap, cudaStream_t stream);

void to_bf16(const float* x, size_t n, bf16* y, cudaStream_t stream);
void to_half(const float* x, size_t n, half* y, cudaStream_t stream);
void bf16_to_half(const bf16* x, size_t n, half* y, cudaStream_t stream);

// y[i, :] = x[rows[i], :] for i < n, rows of dim floats.
void gather_rows(const float* x, const int* rows, int n, int dim, float* y, cudaStream_t stream);

// y[n, out] = x[n, in] · w[out, in]^T, bf16 operands, fp32 accumulation and output (cuBLAS; the
// handle carries the stream).
void matmul_nt(cublasHandle_t handle, const bf16* x, const bf16* w, float* y, int n, int in,
               int out);

// ---- paged rows ----

// Where row i of a batch goes (or comes from): page page[i] (an index into the store's pages;
// a negative page skips the row), row slot[i] (0..kPageRows) of that page.
struct RowMap {
  const int* page = nullptr;
  const int* slot = nullptr;
};

// fp16 K/V pages: K row `slot` of page p at k + p * page_stride + slot * row_stride, V likewise
// from v. The cache pool keeps a page's K rows then its V rows; the workspace keeps K and V in
// two arrays of contiguous rows (page_stride = kPageRows * row_stride).
struct KvPages {
  half* k = nullptr;
  half* v = nullptr;
  size_t page_stride = 0;  // elements
  int row_stride = 0;      // elements
};

// Writes rows k[n, dim], v[n, dim] (fp32) as fp16 into the pages `map` names.
void write_kv_rows(const float* k, const float* v, int n, int dim, RowMap map, KvPages pages,
                   cudaStream_t stream);

// Quantizes rows x[n, width] (row i at x + i * x_stride; 0: width) into the pages `map` names:
// row slot s of page p starts at base + p * page_bytes + s * layout.bytes(). Codes, scales and
// zeros bit-identical to quantize() in quantizer.h on the same row.
void quantize_rows(const float* x, int n, QuantRowLayout layout, uint8_t* base, size_t page_bytes,
                   RowMap map, cudaStream_t stream, int x_stride = 0);

// The inverse for rows i < n whose map.page[i] >= 0: out[i, :] = bf16(zero + scale * code), row i
// at out + i * out_stride (0: width; rows with a negative page are left alone).
void dequantize_rows(const uint8_t* base, size_t page_bytes, QuantRowLayout layout, int n,
                     RowMap map, bf16* out, cudaStream_t stream, int out_stride = 0);

// ---- attention ----

// One sequence of a batch: its new tokens are rows [q_row, q_row + n) of q/out, at positions
// [start_pos, start_pos + n); its K/V for positions [0, start_pos + n) are in the pages its
// table lists (tables + table, entry j covers positions [16 j, 16 j + 16)).
struct AttnSeq {
  int q_row = 0;
  int n = 0;
  int start_pos = 0;
  int table = 0;
};

struct AttnParams {
  int num_heads = 0, num_kv_heads = 0, head_dim = 0;
  int window = 0;        // > 0: a query at p sees positions [p - window + 1, p]
  float scale = 1.0f;    // scores = scale * q.k
  float softcap = 0.0f;  // > 0: scores = cap * tanh(scores / cap)
};

// out[r, h * head_dim ...] = softmax over the positions query row r sees (causal, its window) of
// its scores, times V (fp32 math; q, out [rows, num_heads * head_dim] fp32). row_seq[r] is the
// index in seqs of row r's sequence; `rows` = the sum of seqs[i].n. Query head h reads KV head
// h / (num_heads / num_kv_heads).
void attention(const float* q, float* out, int rows, const int* row_seq, const AttnSeq* seqs,
               const int* tables, KvPages kv, AttnParams p, cudaStream_t stream);

// ---- XQuant's folded values (kernels/cuda/fold_ops.cu) ----

// Softmax weights instead of their sum: for query row r of sequence i = row_seq[r] and head h,
// probs[seq_probs[i] + ((r - q_row) * num_heads + h) * len + p] for p < len = start_pos + n: the
// weight of position p (0 where r does not see p). K read through `kv` (its v is unused).
// max_len: at least every sequence's len.
void attention_probs(const float* q, int rows, const int* row_seq, const AttnSeq* seqs,
                     const int* tables, KvPages kv, AttnParams p, const int* seq_probs,
                     float* probs, int max_len, cudaStream_t stream);

// y[h][r][:] = sum_p weight(r, h, p) * x[seq_x_row[i] + p][0, width) (bf16 out, head-major
// [num_heads][rows][width]) for every row r of every sequence i < num_seqs; x's rows are
// x_stride apart; max_pairs bounds n * num_heads over the sequences.
void weighted_rows(const float* probs, const int* seq_probs, const AttnSeq* seqs, int num_seqs,
                   int max_pairs, const int* seq_x_row, const bf16* x, int width, int x_stride,
                   int num_heads, int rows, bf16* y, cudaStream_t stream);

// out[r][h * dim + d] = t[h][r][d] + bias[(h / group) * dim + d] (bias may be null).
void heads_to_rows(const float* t, int rows, int heads, int dim, int group, const float* bias,
                   float* out, cudaStream_t stream);

// Copies bf16 rows x[n, dim] into pages: row i to base + page[i] * page_stride + slot[i] * dim.
void write_rows_bf16(const bf16* x, int n, int dim, RowMap map, bf16* base, size_t page_stride,
                     cudaStream_t stream);

// matmul_nt with x's rows ldx elements apart (a column slice of a wider matrix).
void matmul_nt_strided(cublasHandle_t handle, const bf16* x, int ldx, const bf16* w, float* y,
                       int n, int in, int out);
// The same rounded to bf16 (fp32 accumulation).
void matmul_nt_strided(cublasHandle_t handle, const bf16* x, int ldx, const bf16* w, bf16* y,
                       int n, int in, int out);

// `batch` products y_b[n, out] = x_b[n, in] w_b[out, in]^T, operands `*_stride` elements apart.
void matmul_nt_batched(cublasHandle_t handle, const bf16* x, const bf16* w, float* y, int n, int in,
                       int out, int batch, size_t x_stride, size_t w_stride, size_t y_stride);

}  // namespace xq::cuda
