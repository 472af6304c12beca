// Split-context attention kernels (flash-decoding): one thread block per (query row, KV head,
// context split) scores the split's positions for all the query heads of the KV head's GQA group,
// so each cached row is read once per KV head, and writes an unnormalized partial (running max,
// sum, weighted accumulator); attention_combine merges a row's splits. Two producers:
//  - paged_attention_splits reads fp16 K/V pages (the fp16 cache);
//  - xquant_decode_splits reads packed X or latent rows, rebuilds each tile's K with tensor cores
//    (dequantize, X̂·Wkᵀ, bias, k-norm, RoPE) and accumulates the softmax-weighted mean of the
//    rows' value inputs (X̂ or the V latent), to be multiplied by Wv once per head afterwards.
// CPU references: kernels/cpu/attention.h (the fp16 cache) and the tests' own double math.
#pragma once

#include "kernels/cuda/cuda_ops.h"

namespace xq::cuda {

// The partials of a launch: for query row r, head h, split s, ml[((r * heads + h) * splits + s)
// * 2 + {0, 1}] = {max score, sum of exp(score - max)}, and acc[(...) * width + c] the
// exp-weighted sum (width = head_dim, or the folded value width). A split with no positions has
// max -inf and sum 0.
struct SplitPartials {
  float* ml = nullptr;
  float* acc = nullptr;
  int splits = 1;
};

// Splits per (row, KV head) so that rows * kv_heads * splits fills the device about twice, each
// split covering at least `min_positions` of `max_positions`; at most `cap`.
int choose_splits(int rows, int kv_heads, int max_positions, int min_positions, int cap);

// Floats of SplitPartials::acc a launch of `rows` rows needs with choose_splits' answer.
size_t split_partials_floats(int rows, int heads, int splits, int width);

// Paged attention over fp16 K/V for query rows of any sequence shape (a row at position p sees
// [0, p], or its window); seqs/row_seq/tables/kv/p as for attention() in cuda_ops.h. head_dim
// must be even and <= 256, num_heads / num_kv_heads <= 16. With `tensor_cores` and a head_dim
// that is a multiple of 16 (paged_attention_tensor_cores), q and the softmax weights enter fp16
// tensor-core products (relative error ~1e-3, against ~1e-6 for the fp32 CUDA-core kernel).
bool paged_attention_supported(const AttnParams& p);
bool paged_attention_tensor_cores(const AttnParams& p);
// The GQA latent's values for paged_attention_splits' fold: position `at` of a sequence is row
// at % kPageRows of page table[at / kPageRows] (the K table) in x, rows row_stride bf16 apart and
// pages page_stride; its V latent is the `width` columns from col0 (width a multiple of 32,
// every row start 16-byte aligned).
struct FoldRows {
  const bf16* x = nullptr;
  size_t page_stride = 0;
  int row_stride = 0, col0 = 0, width = 0;
};

// With past_rope (tensor cores only: paged_attention_tensor_cores), the rows of each sequence's
// positions before its start_pos hold bf16 K without RoPE and bf16 V (a rebuilt workspace's raw
// matmul output), rotated with past_rope and converted as they are staged; its later rows (the
// step's new rows) are fp16 as usual. With fold (tensor cores, 16-byte aligned K rows), the
// partials hold each head's softmax-weighted sum of the rows' V latent (fold->width columns,
// out.acc sized for them) instead of P V; kv.v is not read.
void paged_attention_splits(const float* q, int rows, const int* row_seq, const AttnSeq* seqs,
                            const int* tables, KvPages kv, AttnParams p, SplitPartials out,
                            cudaStream_t stream, bool tensor_cores = true,
                            const RopeAngles* past_rope = nullptr,
                            const FoldRows* fold = nullptr);
// The columns one fold block takes (256, 128, 64 or 32), or 0 where `width` is not a multiple
// of 32.
int fold_slice_width(int width);

// Merges the splits of every (row, head). Exactly one output: out_f32 rows [rows][heads * width]
// (out_f32 + r * heads * width + h * width), or out_bf16 head-major [heads][rows][width] (or,
// with bf16_rows, in the rows' layout of out_f32).
void attention_combine(SplitPartials in, int rows, int heads, int width, float* out_f32,
                       bf16* out_bf16, cudaStream_t stream, bool bf16_rows = false);

// XQuant decode: each sequence of `seqs` has one new query row (n == 1) at position start_pos;
// its cached rows [0, start_pos) are packed `layout` rows in pages (layer base `base`, one
// page's layer part `page_bytes`, tables as above).
struct XDecodeParams {
  const uint8_t* base = nullptr;
  size_t page_bytes = 0;
  QuantRowLayout layout;
  int k_col = 0, k_width = 0;     // the K rebuild's input: row columns [k_col, k_col + k_width)
  int v_col = 0, v_width = 0;     // the folded value input
  const bf16* wk = nullptr;       // [num_kv_heads * head_dim][k_width]: K = input · wkᵀ
  const float* bk = nullptr;      // [num_kv_heads * head_dim] or null
  const float* k_norm = nullptr;  // [head_dim] or null (rmsnorm per head, before RoPE)
  bool norm_one_plus = false;     // Gemma: x * (1 + w)
  float norm_eps = 1e-6f;
  const double* inv_freq = nullptr;  // [head_dim / 2]
  // The new row's own key (normed and rotated, [rows][num_kv_heads * head_dim]) and value input
  // (bf16, row r at v_new + r * v_new_stride, columns [0, v_width)).
  const float* k_new = nullptr;
  const bf16* v_new = nullptr;
  int v_new_stride = 0;
};
bool xquant_decode_supported(const AttnParams& p, const XDecodeParams& x);
// rows = the number of sequences (one row each, q rows q_row of each seq).
void xquant_decode_splits(const float* q, int rows, const AttnSeq* seqs, const int* tables,
                          const XDecodeParams& x, AttnParams p, SplitPartials out,
                          cudaStream_t stream);

}  // namespace xq::cuda
