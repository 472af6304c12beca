// Per-channel quantization blocks in the paged store (layout: kernels/cuda/channel_layout.h):
// a step's new rows go into each sequence's fp16 window slot until their block of G positions
// fills, and a filled block is quantized per channel into its pages, bit-identical to
// ChannelQuantRows (engine/cache/quantized_rows.h), which quantizes the fp16-rounded rows;
// reading dequantizes the filled blocks and copies (or quantizes as a partial block) the
// unfilled one. KIVI's values (per token, the last G in an fp16 ring) use the same window slots.
#pragma once

#include "kernels/cuda/channel_layout.h"
#include "kernels/cuda/cuda_ops.h"

namespace xq::cuda {

// One segment of a layer: page p's part at pages + p * page_bytes, sequence window slot s's G
// fp16 rows of `layout.width` at windows + s * slot_bytes.
struct ChannelStore {
  uint8_t* pages = nullptr;
  size_t page_bytes = 0;
  uint8_t* windows = nullptr;
  size_t slot_bytes = 0;
  ChannelBlockLayout layout;
};

// A step's sequences: seqs[i] (q_row, n, start, table) with its cache pages at tables +
// seqs[i].table (entry j covers positions [16 j, 16 j + 16)), its window slot slots[i].
struct ChannelSeqs {
  const AttnSeq* seqs = nullptr;
  const int* tables = nullptr;
  const int* slots = nullptr;
};

// Appends the step's new rows x (row r at x + r * x_stride, fp32; row r of sequence row_seq[r]
// at position start + r - q_row): quantizes the `num_blocks` blocks the step fills (blocks[2 j]
// the sequence, blocks[2 j + 1] the block index; their earlier rows come from the window) into
// their pages, then keeps the rows of each sequence's unfilled block in its window (row p % G).
void append_channel_rows(const float* x, int x_stride, int rows, const int* row_seq,
                         ChannelStore store, ChannelSeqs seqs, const int* blocks, int num_blocks,
                         cudaStream_t stream);

// The block part of append_channel_rows alone: quantizes the `num_blocks` blocks (blocks[2 j]
// the sequence, blocks[2 j + 1] the block index) from rows of x as append_channel_rows does (a
// block position before its sequence's start comes from the window). XQuant-CL stages each
// block's deltas as rows of its own, naming them by a sequence per block whose start is the
// block's first position.
void quantize_channel_blocks(const float* x, int x_stride, ChannelStore store, ChannelSeqs seqs,
                             const int* blocks, int num_blocks, cudaStream_t stream);

// Dequantized rows of the filled blocks into out (bf16 or fp16; row r at out + r * out_stride):
// workspace row r holds position pos[r] of sequence seq[r] (seq[r] < 0: skipped, as are
// positions in a block the sequence's start has not filled).
void read_channel_blocks(ChannelStore store, ChannelSeqs seqs, const int* seq, const int* pos,
                         int rows, bf16* out, int out_stride, cudaStream_t stream);
void read_channel_blocks(ChannelStore store, ChannelSeqs seqs, const int* seq, const int* pos,
                         int rows, half* out, int out_stride, cudaStream_t stream);

// As read_channel_blocks, after the step quantized its blocks: every block filled by the end of
// the step (positions below end - end % G, end = start + n), added to acc in fp32 (accumulate
// false: written; other rows left alone), or written as bf16. XQuant-CL's chain reads these.
void add_step_blocks(ChannelStore store, ChannelSeqs seqs, const int* seq, const int* pos, int rows,
                     float* acc, int acc_stride, bool accumulate, cudaStream_t stream);
void read_step_blocks(ChannelStore store, ChannelSeqs seqs, const int* seq, const int* pos,
                      int rows, bf16* out, int out_stride, cudaStream_t stream);

// Each sequence i in [first, first + count)'s window rows into out rows ws_row[i - first] + p:
// positions p in [start - start % G, start) (its unfilled block; quantized: read as a partial
// block of that many rows, per channel, as ChannelQuantRows::read_tail does), or, `ring`, in
// [max(0, start - G), start) (KIVI's value window, fp16).
struct WindowRead {
  bool ring = false;
  bool quantized = false;
};
void read_channel_window(ChannelStore store, ChannelSeqs seqs, int first, int count,
                         const int* ws_row, WindowRead how, bf16* out, int out_stride,
                         cudaStream_t stream);
void read_channel_window(ChannelStore store, ChannelSeqs seqs, int first, int count,
                         const int* ws_row, WindowRead how, half* out, int out_stride,
                         cudaStream_t stream);

// Without the fp16 window, a value the unfilled block holds is read as the block quantized so
// far: for each sequence i in [first, first + count), each channel c < width, the rows
// ws_row[i - first] + p of x (row r at x + r * width) at its window positions p in
// [start - start % group, start), rounded to fp16 and quantized per channel as one partial block
// at `bits` (16: the fp16 values), dequantized into the same rows of out (out may be x). As
// ChannelQuantRows::read_tail, and as read_channel_window reads the store's window; XQuant-CL
// quantizes its window rows' deltas this way (cl_channel_accumulator.cpp).
void quantize_window_partial(const float* x, int width, int group, int bits, ChannelSeqs seqs,
                             int first, int count, const int* ws_row, float* out,
                             cudaStream_t stream);
void quantize_window_partial(const float* x, int width, int group, int bits, ChannelSeqs seqs,
                             int first, int count, const int* ws_row, bf16* out,
                             cudaStream_t stream);

// KIVI's value ring: out[j, :] = the fp16-rounded value of position spill[2 j + 1] of sequence
// spill[2 j] (from its ring before the step, else from the new rows x), for the values that
// leave the ring this step (then quantized per token); afterwards the ring takes each
// sequence's last G positions from the new rows.
void gather_ring_rows(const float* x, int x_stride, ChannelStore store, ChannelSeqs seqs,
                      const int* spill, int num_spill, float* out, cudaStream_t stream);
void write_ring_rows(const float* x, int x_stride, int rows, const int* row_seq, ChannelStore store,
                     ChannelSeqs seqs, cudaStream_t stream);

}  // namespace xq::cuda
