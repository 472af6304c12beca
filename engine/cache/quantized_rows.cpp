#include "engine/cache/quantized_rows.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "engine/cache/erase_front.h"
#include "engine/cache/quantizer.h"
#include "kernels/cpu/half.h"

namespace xq {
namespace {

void check_width(int width) {
  if (width < 1) throw std::invalid_argument("quantized rows: width must be >= 1");
}

void check_held(int begin, int first) {
  if (begin < first) {
    throw std::out_of_range("quantized rows: row " + std::to_string(begin) +
                            " was dropped (rows start at " + std::to_string(first) + ")");
  }
}

}  // namespace

// ---- TokenQuantRows ----

TokenQuantRows::TokenQuantRows(int width, int bits, int group, int window)
    : width_(width), bits_(bits), group_(group), window_(bits == 16 ? 0 : window) {
  check_width(width);
  if (bits == 16) {
    row_bytes_ = 2 * static_cast<size_t>(width);
    return;
  }
  check_quant_params(bits, group);
  row_words_ = packed_words(width, bits);
  row_groups_ = num_groups(width, group);
  row_bytes_ = quantized_bytes(width, bits, group);
}

void TokenQuantRows::quantize_rows(const float* x, int n) {
  const size_t w = width_;
  const size_t held = quantized_ - first_;
  if (bits_ == 16) {
    half_.resize((held + n) * w);
    floats_to_halves(x, half_.data() + held * w, n * w);
  } else {
    words_.resize((held + n) * row_words_);
    scales_.resize((held + n) * row_groups_);
    zeros_.resize((held + n) * row_groups_);
    for (int i = 0; i < n; ++i) {
      const size_t r = held + i;
      quantize(x + i * w, w, bits_, group_, words_.data() + r * row_words_,
               scales_.data() + r * row_groups_, zeros_.data() + r * row_groups_);
    }
  }
  quantized_ += n;
}

void TokenQuantRows::append(const float* x, int n) {
  if (window_ == 0) {
    quantize_rows(x, n);
    return;
  }
  const size_t w = width_;
  const size_t old = recent_.size();
  recent_.resize(old + n * w);
  floats_to_halves(x, recent_.data() + old, n * w);
  const int spill = recent_rows() - window_;
  if (spill > 0) {
    std::vector<float> rows(spill * w);
    halves_to_floats(recent_.data(), rows.data(), rows.size());
    quantize_rows(rows.data(), spill);
    recent_.erase(recent_.begin(), recent_.begin() + spill * w);
  }
}

void TokenQuantRows::read(int begin, int end, float* out) const {
  if (begin < end) check_held(begin, first_);
  const size_t w = width_;
  for (int r = begin; r < end; ++r, out += w) {
    const size_t i = r - first_;  // storage index of a quantized row
    if (r >= quantized_) {
      halves_to_floats(recent_.data() + (r - quantized_) * w, out, w);
    } else if (bits_ == 16) {
      halves_to_floats(half_.data() + i * w, out, w);
    } else {
      dequantize(words_.data() + i * row_words_, scales_.data() + i * row_groups_,
                 zeros_.data() + i * row_groups_, w, bits_, group_, out);
    }
  }
}

void TokenQuantRows::drop_before(int row) {
  const int to = std::min(row, quantized_);
  if (to <= first_) return;
  const size_t n = to - first_;
  erase_front(words_, n * row_words_);
  erase_front(scales_, n * row_groups_);
  erase_front(zeros_, n * row_groups_);
  erase_front(half_, n * width_);
  first_ = to;
}

void TokenQuantRows::truncate(int n) {
  if (n >= rows()) return;
  const size_t w = width_;
  if (n >= quantized_) {
    recent_.resize((n - quantized_) * w);
    return;
  }
  if (n == 0) first_ = 0;
  // Rebuild the window from the last kept rows so the layout matches appending n rows.
  const int keep_recent = std::min(n, window_);
  std::vector<float> back(keep_recent * w);
  read(n - keep_recent, n, back.data());
  quantized_ = n - keep_recent;
  first_ = std::min(first_, quantized_);
  const size_t held = quantized_ - first_;
  words_.resize(held * row_words_);
  scales_.resize(held * row_groups_);
  zeros_.resize(held * row_groups_);
  half_.resize(bits_ == 16 ? held * w : 0);
  recent_.resize(back.size());
  floats_to_halves(back.data(), recent_.data(), back.size());
}

size_t TokenQuantRows::bytes() const {
  return static_cast<size_t>(quantized_ - first_) * row_bytes_ + recent_.size() * 2;
}

// ---- ChannelQuantRows ----

ChannelQuantRows::ChannelQuantRows(int width, int bits, int group, bool fp16_tail)
    : width_(width), bits_(bits), group_(group), fp16_tail_(fp16_tail) {
  check_width(width);
  if (group < 1) throw std::invalid_argument("quantized rows: group size must be >= 1");
  if (bits == 16) return;
  check_quant_params(bits, group);
  block_words_ = packed_words(static_cast<size_t>(group) * width, bits);
  block_bytes_ = quantized_bytes(static_cast<size_t>(group) * width, bits, group);
}

void ChannelQuantRows::flush_block() {
  // Channel-major copy of the block so each channel's `group_` values form one quantizer group.
  const size_t w = width_, g = group_;
  std::vector<float> rows(g * w), cols(g * w);
  halves_to_floats(tail_.data(), rows.data(), g * w);
  for (size_t t = 0; t < g; ++t)
    for (size_t c = 0; c < w; ++c) cols[c * g + t] = rows[t * w + c];
  const size_t b = blocks_ - first_block_;  // storage index of the new block
  words_.resize((b + 1) * block_words_);
  scales_.resize((b + 1) * w);
  zeros_.resize((b + 1) * w);
  quantize(cols.data(), g * w, bits_, group_, words_.data() + b * block_words_,
           scales_.data() + b * w, zeros_.data() + b * w);
  ++blocks_;
  tail_.erase(tail_.begin(), tail_.begin() + g * w);
}

void ChannelQuantRows::append(const float* x, int n) {
  const size_t w = width_;
  for (int i = 0; i < n; ++i) {
    const size_t old = tail_.size();
    tail_.resize(old + w);
    floats_to_halves(x + i * w, tail_.data() + old, w);
    if (bits_ != 16 && tail_rows() == group_) flush_block();
  }
}

void ChannelQuantRows::read_block(int block, float* out) const {
  const size_t w = width_, g = group_;
  const size_t b = block - first_block_;
  std::vector<float> cols(g * w);
  dequantize(words_.data() + b * block_words_, scales_.data() + b * w, zeros_.data() + b * w, g * w,
             bits_, group_, cols.data());
  for (size_t t = 0; t < g; ++t)
    for (size_t c = 0; c < w; ++c) out[t * w + c] = cols[c * g + t];
}

void ChannelQuantRows::read(int begin, int end, float* out) const {
  if (begin < end) check_held(begin, first());
  const size_t w = width_;
  const int qrows = tail_start();
  std::vector<float> block;
  for (int r = begin; r < end;) {
    if (r >= qrows) {
      std::vector<float> tail((tail_rows() - (r - qrows)) * w);
      read_tail(r - qrows, tail.data());
      std::copy(tail.begin(), tail.begin() + (end - r) * w, out + (r - begin) * w);
      break;
    }
    const int b = r / group_;
    block.resize(group_ * w);
    read_block(b, block.data());
    const int stop = std::min(end, (b + 1) * group_);
    std::copy(block.begin() + (r - b * group_) * w, block.begin() + (stop - b * group_) * w,
              out + (r - begin) * w);
    r = stop;
  }
}

void ChannelQuantRows::read_tail(int from, float* out) const {
  const size_t w = width_, t = tail_rows();
  if (fp16_tail_ || bits_ == 16) {
    halves_to_floats(tail_.data() + from * w, out, (t - from) * w);
    return;
  }
  // The whole partial block, channel-major, one group of t values per channel.
  std::vector<float> rows(t * w), cols(t * w);
  halves_to_floats(tail_.data(), rows.data(), t * w);
  for (size_t i = 0; i < t; ++i)
    for (size_t c = 0; c < w; ++c) cols[c * t + i] = rows[i * w + c];
  std::vector<uint32_t> words(packed_words(t * w, bits_));
  std::vector<uint16_t> scales(w), zeros(w);
  quantize(cols.data(), t * w, bits_, static_cast<int>(t), words.data(), scales.data(),
           zeros.data());
  dequantize(words.data(), scales.data(), zeros.data(), t * w, bits_, static_cast<int>(t),
             cols.data());
  for (size_t i = from; i < t; ++i)
    for (size_t c = 0; c < w; ++c) out[(i - from) * w + c] = cols[c * t + i];
}

void ChannelQuantRows::truncate(int n) {
  if (n >= rows()) return;
  const size_t w = width_;
  const int qrows = tail_start();
  if (n >= qrows) {
    tail_.resize((n - qrows) * w);
    return;
  }
  if (n == 0) first_block_ = dropped16_ = 0;
  check_held(n, first());
  const int keep_blocks = n / group_, rest = n % group_;
  std::vector<float> back(rest * w);
  if (rest > 0) read(keep_blocks * group_, n, back.data());
  blocks_ = keep_blocks;
  first_block_ = std::min(first_block_, blocks_);
  const size_t held = blocks_ - first_block_;
  words_.resize(held * block_words_);
  scales_.resize(held * w);
  zeros_.resize(held * w);
  tail_.resize(back.size());
  floats_to_halves(back.data(), tail_.data(), back.size());
}

void ChannelQuantRows::drop_before(int row) {
  if (bits_ == 16) {
    const int to = std::min(row, rows());
    if (to <= dropped16_) return;
    erase_front(tail_, static_cast<size_t>(to - dropped16_) * width_);
    dropped16_ = to;
    return;
  }
  const int to = std::min(row / group_, blocks_);
  if (to <= first_block_) return;
  const size_t n = to - first_block_;
  erase_front(words_, n * block_words_);
  erase_front(scales_, n * width_);
  erase_front(zeros_, n * width_);
  first_block_ = to;
}

size_t ChannelQuantRows::bytes() const {
  return static_cast<size_t>(blocks_ - first_block_) * block_bytes_ + tail_.size() * 2;
}

}  // namespace xq
