// Growable stores of quantized rows (one row per token) in the two layouts the formats use:
// per-token groups (KIVI values, XQuant's X, the V latent) and per-channel groups of G tokens
// (KIVI keys, the K latent), each with the full-precision (fp16) recent-token window KIVI keeps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace xq {

// Rows of `width` values, each row quantized on its own in groups of `group` consecutive values
// (bits 2/3/4/8), or stored as fp16 (bits 16). With window R > 0 the most recent min(rows, R)
// rows stay fp16 and a row is quantized when it leaves the window (KIVI's value residual).
class TokenQuantRows {
 public:
  TokenQuantRows(int width, int bits, int group, int window = 0);

  int rows() const { return quantized_ + recent_rows(); }
  void append(const float* x, int n);
  // Dequantized rows [begin, end) into out [end - begin, width].
  void read(int begin, int end, float* out) const;
  // Keeps rows [0, n). When that cuts into the quantized rows, the last min(n, R) kept rows move
  // back into the fp16 window (as their dequantized values), so the layout stays what appending
  // n rows would give.
  void truncate(int n);
  // Forgets rows before `row` (a sliding-window layer's past); rows keep their indices. Only
  // quantized rows are dropped: the fp16 window stays whole.
  void drop_before(int row);
  // The first row still held.
  int first() const { return first_; }
  // Exact bytes held: quantized rows, their scales and zero points, and the fp16 window.
  size_t bytes() const;
  // Bytes of one row once quantized (or fp16 for bits 16).
  size_t row_bytes() const { return row_bytes_; }
  // Bytes of one row in the fp16 window.
  size_t window_row_bytes() const { return 2 * static_cast<size_t>(width_); }

 private:
  int recent_rows() const { return static_cast<int>(recent_.size() / width_); }
  void quantize_rows(const float* x, int n);

  int width_, bits_, group_, window_;
  size_t row_words_ = 0, row_groups_ = 0, row_bytes_ = 0;
  int quantized_ = 0;             // rows ever quantized (and kept), dropped ones included
  int first_ = 0;                 // rows [0, first_) were dropped
  std::vector<uint32_t> words_;   // [quantized_ - first_, row_words_] (bits < 16)
  std::vector<uint16_t> scales_;  // [quantized_ - first_, row_groups_] fp16
  std::vector<uint16_t> zeros_;   // [quantized_ - first_, row_groups_] fp16
  std::vector<uint16_t> half_;    // [quantized_ - first_, width_] fp16 (bits 16)
  std::vector<uint16_t> recent_;  // [recent rows, width_] fp16, oldest first
};

// Rows of `width` values quantized per channel: every `group` consecutive rows form a block in
// which each channel (column) is one group of `group` values with its own scale and zero point.
// The rows of an unfilled block (< group of them) stay fp16 until it fills (KIVI's key
// residual). Bits 16 keeps every row fp16. With fp16_tail false, read() returns the unfilled
// block's rows quantized per channel as a partial block (they are still stored in fp16, to be
// quantized with the whole block once it fills): no reader sees a full-precision past.
class ChannelQuantRows {
 public:
  ChannelQuantRows(int width, int bits, int group, bool fp16_tail = true);

  int rows() const { return tail_start() + tail_rows(); }
  void append(const float* x, int n);
  void read(int begin, int end, float* out) const;
  // Keeps rows [0, n); a cut inside a quantized block turns its kept rows back into the fp16
  // tail (as their dequantized values).
  void truncate(int n);
  // Forgets the quantized blocks that end at or before `row` (a sliding-window layer's past);
  // rows keep their indices, and a block partly before `row` stays whole.
  void drop_before(int row);
  int first() const { return first_block_ * group_ + dropped16_; }
  size_t bytes() const;
  // Bytes of one quantized block of `group` rows: codes, and a scale and zero point per channel.
  size_t block_bytes() const { return block_bytes_; }
  size_t tail_row_bytes() const { return 2 * static_cast<size_t>(width_); }
  int group() const { return group_; }

 private:
  int tail_rows() const { return static_cast<int>(tail_.size() / width_); }
  int tail_start() const { return blocks_ * group_ + dropped16_; }  // row index of tail_[0]
  void flush_block();
  void read_block(int b, float* out) const;  // [group_, width_]
  // The tail rows [from, tail_rows()) as read() returns them (fp16, or quantized as a block).
  void read_tail(int from, float* out) const;

  int width_, bits_, group_;
  bool fp16_tail_;
  size_t block_words_ = 0, block_bytes_ = 0;
  int blocks_ = 0;                // blocks ever quantized (and kept), dropped ones included
  int first_block_ = 0;           // blocks [0, first_block_) were dropped
  int dropped16_ = 0;             // bits 16 (no blocks): rows dropped from the front of the tail
  std::vector<uint32_t> words_;   // [blocks_ - first_block_, block_words_]
  std::vector<uint16_t> scales_;  // [blocks_ - first_block_, width_]
  std::vector<uint16_t> zeros_;   // [blocks_ - first_block_, width_]
  std::vector<uint16_t> tail_;    // [tail rows, width_] fp16
};

}  // namespace xq
