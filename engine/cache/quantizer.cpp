#include "engine/cache/quantizer.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/half.h"

namespace xq {
namespace {

constexpr float kHalfMax = 65504.0f;

// The next fp16 value below / above a finite fp16 value h (bit patterns; +0 and -0 both step to
// the smallest subnormal of the right sign).
uint16_t half_step_down(uint16_t h) {
  if ((h & 0x7fffu) == 0) return 0x8001u;
  return (h & 0x8000u) ? h + 1 : h - 1;
}
uint16_t half_step_up(uint16_t h) {
  if ((h & 0x7fffu) == 0) return 0x0001u;
  return (h & 0x8000u) ? h - 1 : h + 1;
}

// The largest fp16 <= f and the smallest fp16 >= f, for f within the fp16 range.
uint16_t half_floor(float f) {
  uint16_t h = float_to_half(f);
  return half_to_float(h) > f ? half_step_down(h) : h;
}
uint16_t half_ceil(float f) {
  uint16_t h = float_to_half(f);
  return half_to_float(h) < f ? half_step_up(h) : h;
}

void quantize_group(const float* x, size_t n, int bits, uint8_t* codes, uint16_t* scale,
                    uint16_t* zero) {
  const int qmax = (1 << bits) - 1;
  float lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) continue;
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (lo > hi) lo = hi = 0.0f;  // no finite value: NaN maps to 0, infinities saturate around it
  lo = std::clamp(lo, -kHalfMax, kHalfMax);
  hi = std::clamp(hi, -kHalfMax, kHalfMax);
  const uint16_t zh = half_floor(lo);
  const float z = half_to_float(zh);
  const float step = (hi - z) / qmax;
  const uint16_t sh = step > 0.0f ? half_ceil(std::min(step, kHalfMax)) : 0;
  const float s = half_to_float(sh);
  *scale = sh;
  *zero = zh;
  for (size_t i = 0; i < n; ++i) {
    float v = x[i];
    if (std::isnan(v)) v = 0.0f;
    int c = 0;
    if (s > 0.0f) {
      const float t = (std::clamp(v, -kHalfMax, kHalfMax) - z) / s;
      c = static_cast<int>(std::clamp(std::nearbyint(t), 0.0f, static_cast<float>(qmax)));
    }
    codes[i] = static_cast<uint8_t>(c);
  }
}

}  // namespace

void check_quant_params(int bits, int group) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
    throw std::invalid_argument("quantizer: bits must be 2, 3, 4 or 8, got " +
                                std::to_string(bits));
  }
  if (group < 1) {
    throw std::invalid_argument("quantizer: group size must be >= 1, got " + std::to_string(group));
  }
}

void pack_codes(const uint8_t* codes, size_t n, int bits, uint32_t* words) {
  std::fill(words, words + packed_words(n, bits), 0u);
  for (size_t i = 0; i < n; ++i) {
    const size_t bit = i * bits;
    const size_t w = bit / 32;
    const unsigned shift = bit % 32;
    words[w] |= static_cast<uint32_t>(codes[i]) << shift;
    if (shift + bits > 32) words[w + 1] |= static_cast<uint32_t>(codes[i]) >> (32 - shift);
  }
}

void unpack_codes(const uint32_t* words, size_t n, int bits, uint8_t* codes) {
  const size_t nw = packed_words(n, bits);
  const uint32_t mask = (1u << bits) - 1;
  for (size_t i = 0; i < n; ++i) {
    const size_t bit = i * bits;
    const size_t w = bit / 32;
    const unsigned shift = bit % 32;
    uint64_t pair = words[w];
    if (w + 1 < nw) pair |= static_cast<uint64_t>(words[w + 1]) << 32;
    codes[i] = static_cast<uint8_t>((pair >> shift) & mask);
  }
}

void quantize(const float* x, size_t n, int bits, int group, uint32_t* words, uint16_t* scales,
              uint16_t* zeros) {
  check_quant_params(bits, group);
  std::vector<uint8_t> codes(n);
  for (size_t g = 0, begin = 0; begin < n; ++g, begin += group) {
    const size_t len = std::min(n - begin, static_cast<size_t>(group));
    quantize_group(x + begin, len, bits, codes.data() + begin, scales + g, zeros + g);
  }
  pack_codes(codes.data(), n, bits, words);
}

void dequantize(const uint32_t* words, const uint16_t* scales, const uint16_t* zeros, size_t n,
                int bits, int group, float* out) {
  check_quant_params(bits, group);
  // Codes are read straight from the words (a 64-bit window covers a code straddling two): this
  // runs over every cached row at every step, so no staging buffer.
  const size_t nw = packed_words(n, bits);
  const uint32_t mask = (1u << bits) - 1;
  for (size_t g = 0, begin = 0; begin < n; ++g, begin += group) {
    const size_t end = std::min(n, begin + group);
    const float s = half_to_float(scales[g]), z = half_to_float(zeros[g]);
    for (size_t i = begin; i < end; ++i) {
      const size_t bit = i * bits, w = bit / 32;
      uint64_t pair = words[w];
      if (w + 1 < nw) pair |= static_cast<uint64_t>(words[w + 1]) << 32;
      out[i] = z + s * static_cast<float>((pair >> (bit % 32)) & mask);
    }
  }
}

}  // namespace xq
