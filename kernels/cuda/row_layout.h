// The paged store's shape and a quantized row's layout, host-side and CUDA-free: the CUDA
// kernels (cuda_ops.h) and the host code that sizes the GPU cache (engine/cuda/
// gpu_cache_layout.h, tested in the CPU build too) share them.
#pragma once

#include <cstddef>

namespace xq::cuda {

// Rows of a paged store: a page holds kPageRows consecutive positions of one sequence, and a
// sequence's page table lists its pages in position order (position p is in table[p / 16], row
// p % 16 of that page). The cache pool and the rematerialization workspace share this layout.
constexpr int kPageRows = 16;

// One quantized row of `width` values, laid out as engine/cache/quantizer.h packs a row:
// uint32 words[packed_words(width, bits)] (codes LSB-first across words), then fp16
// scales[groups], then fp16 zeros[groups] (zero = the group minimum rounded down to fp16,
// scale = (max - zero) / (2^bits - 1) rounded up to fp16, codes round-to-nearest-even, the
// non-finite rules of quantizer.h). bits 16: fp16 values[width], no words or groups.
struct QuantRowLayout {
  int width = 0, bits = 16, group = 32;
  size_t words() const { return bits == 16 ? 0 : (static_cast<size_t>(width) * bits + 31) / 32; }
  size_t groups() const {
    return bits == 16 ? 0 : (static_cast<size_t>(width) + group - 1) / group;
  }
  // Bytes of one row (quantized_bytes(width, bits, group) in quantizer.h; 2 * width at 16 bits).
  size_t bytes() const {
    return bits == 16 ? 2 * static_cast<size_t>(width) : 4 * words() + 4 * groups();
  }
};

}  // namespace xq::cuda
