// The quantizer's arithmetic on the device, step for step as engine/cache/quantizer.cpp does it
// (fp16 zero rounded down, scale rounded up, codes round-to-nearest-even, the non-finite rules),
// shared by the per-token rows (quant_rows.cu) and the per-channel blocks (channel_quant.cu).
#pragma once

#include <cuda_fp16.h>

namespace xq::cuda::detail {

constexpr float kHalfMax = 65504.0f;

// fp16 neighbours of a finite fp16 value (bit patterns, as quantizer.cpp steps them: both zeros
// step to the smallest subnormal of the right sign).
__device__ inline unsigned short half_step_down(unsigned short h) {
  if ((h & 0x7fffu) == 0) return 0x8001u;
  return (h & 0x8000u) ? h + 1 : h - 1;
}
__device__ inline unsigned short half_step_up(unsigned short h) {
  if ((h & 0x7fffu) == 0) return 0x0001u;
  return (h & 0x8000u) ? h - 1 : h + 1;
}
__device__ inline float half_bits_to_float(unsigned short h) {
  return __half2float(__ushort_as_half(h));
}
// The largest fp16 <= f and the smallest fp16 >= f, for f within the fp16 range.
__device__ inline unsigned short half_floor(float f) {
  const unsigned short h = __half_as_ushort(__float2half_rn(f));
  return half_bits_to_float(h) > f ? half_step_down(h) : h;
}
__device__ inline unsigned short half_ceil(float f) {
  const unsigned short h = __half_as_ushort(__float2half_rn(f));
  return half_bits_to_float(h) < f ? half_step_up(h) : h;
}

// A group's range as the CPU's loop takes it (std::min / std::max), over finite values only.
__device__ inline void widen(float v, float& lo, float& hi) {
  if (!isfinite(v)) return;
  lo = v < lo ? v : lo;
  hi = hi < v ? v : hi;
}

// A group's fp16 zero point and scale (bit patterns) from its finite minimum and maximum (lo > hi
// when it has no finite value).
struct GroupParams {
  unsigned short zero, scale;
};
__device__ inline GroupParams group_params(float lo, float hi, int bits) {
  const int qmax = (1 << bits) - 1;
  if (lo > hi) lo = hi = 0.0f;  // no finite value: NaN maps to 0, infinities saturate around it
  lo = fminf(fmaxf(lo, -kHalfMax), kHalfMax);
  hi = fminf(fmaxf(hi, -kHalfMax), kHalfMax);
  const unsigned short zh = half_floor(lo);
  const float z = half_bits_to_float(zh);
  const float step = __fdiv_rn(__fsub_rn(hi, z), static_cast<float>(qmax));
  const unsigned short sh = step > 0.0f ? half_ceil(fminf(step, kHalfMax)) : 0;
  return {zh, sh};
}

// The code of v in a group of zero z and scale s.
__device__ inline unsigned quant_code(float v, float z, float s, int bits) {
  const int qmax = (1 << bits) - 1;
  if (isnan(v)) v = 0.0f;
  if (!(s > 0.0f)) return 0;
  const float t = __fdiv_rn(__fsub_rn(fminf(fmaxf(v, -kHalfMax), kHalfMax), z), s);
  return static_cast<unsigned>(fminf(fmaxf(rintf(t), 0.0f), static_cast<float>(qmax)));
}

}  // namespace xq::cuda::detail
