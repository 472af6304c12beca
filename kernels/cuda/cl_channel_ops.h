// XQuant-CL's per-channel (-ch) forms: each layer keeps its newest < G rows of S (the normed X
// as fp16, or the residual stream as fp32, as the CPU's window keeps them) in the sequence's
// window slot; when a block of G positions fills, its rows' deltas against the chain's
// reconstruction are staged here and quantized per channel (quantize_channel_blocks). CPU
// reference: engine/cache/xquant_cl_channel.cpp (to_window, flush_block, reconstruct_past).
#pragma once

#include "kernels/cuda/channel_ops.h"

namespace xq::cuda {

// One layer's windows: sequence slot s's rows at base + s * slot_bytes, position p at row p % G.
struct ClWindow {
  uint8_t* base = nullptr;
  size_t slot_bytes = 0;
  int width = 0;      // hidden_size
  int group = 0;      // G
  bool fp32 = false;  // the residual stream; else fp16 X
};

// The deltas of blocks[0, count) (pairs: sequence i of seqs, block b): staged row (first + j) G
// + t gets S(p) - (subtract ? acc[ws_row[i - seq_begin] + p] : 0) for p = b G + t, where S(p) is
// the window's row for p < start, else the new row src[q_row + p - start] (rounded to fp16 when
// the window keeps fp16, as the CPU's window does before its block is quantized). acc and out
// rows are `width` floats apart, src's src_stride.
void cl_block_deltas(const float* src, int src_stride, ClWindow win, ChannelSeqs seqs,
                     const int* blocks, int count, int first, int seq_begin, const int* ws_row,
                     const float* acc, bool subtract, float* out, cudaStream_t stream);

// The rebuilt rows of the window positions each sequence i in [first, first + count) held before
// the step, [start - start % G, start): out row ws_row[i - first] + p = bf16(S(p)), or with
// `norm` bf16(rmsnorm(S(p))) (the residual stream; one_plus for Gemma), as cl_rebuilt_rows.
void cl_window_rows(ClWindow win, ChannelSeqs seqs, int first, int count, const int* ws_row,
                    const float* norm, float eps, bool one_plus, bf16* out, cudaStream_t stream);

// New rows [row_begin, row_begin + n) of the step (row r of sequence row_seq[r], src row r) at
// positions past the step's last filled block go to their window row.
void cl_window_write(const float* src, int src_stride, int row_begin, int n, const int* row_seq,
                     ClWindow win, ChannelSeqs seqs, cudaStream_t stream);

// Without the fp16 window (fp16_window false) a layer's window positions are read as the CPU's
// window_quantized reads them: A_l = base + deq(Q(S_l - base)), the delta quantized per channel
// over the sequence's window rows as one partial block (quantize_window_partial), base the chain's
// reconstruction below: A_prev of the full block where the step fills it (every lower layer
// quantized it already), else the lower layer's partial A. Rows are workspace rows: sequence i's
// position p at ws_row[i - first] + p, its window positions p in [start - start % G, start).

// out = S_l - (subtract ? acc : 0) at the window positions (S from the window).
void cl_window_deltas(ClWindow win, ChannelSeqs seqs, int first, int count, const int* ws_row,
                      const float* acc, bool subtract, float* out, cudaStream_t stream);

// part += acc at the window positions (rows `width` floats apart).
void cl_window_add(const float* acc, int width, int group, ChannelSeqs seqs, int first, int count,
                   const int* ws_row, float* part, cudaStream_t stream);

// The window positions' A_l in part: with `out`, the rows K and V are rebuilt from as
// cl_rebuilt_rows writes them (norm: the residual stream's); and into acc for the sequences
// whose block the step does not fill, for the chain's next layer (a filled block's rows keep
// the A_l the accumulator has from the quantized block).
void cl_window_partial_rows(const float* part, int width, int group, ChannelSeqs seqs, int first,
                            int count, const int* ws_row, const float* norm, float eps,
                            bool one_plus, bf16* out, float* acc, cudaStream_t stream);

}  // namespace xq::cuda
