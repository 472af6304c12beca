// RoPE's angle for position p and pair i, as every CUDA RoPE path takes it: in double (as the CPU
// does), reduced to [-pi, pi] before the fp32 sine and cosine; from the cos/sin table where it
// holds the position.
#pragma once

#include "kernels/cuda/cuda_ops.h"

namespace xq::cuda::detail {

__device__ __forceinline__ float2 rope_angle(int p, int i, const double* inv_freq) {
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  double a = static_cast<double>(p) * inv_freq[i];
  a -= kTwoPi * rint(a / kTwoPi);
  float s, c;
  sincosf(static_cast<float>(a), &s, &c);
  return make_float2(c, s);
}

// (cos, sin) of position p >= 0, pair i of hd2.
__device__ __forceinline__ float2 rope_cos_sin(const RopeAngles& ra, int p, int i, int hd2) {
  return p < ra.table_positions ? ra.table[static_cast<size_t>(p) * hd2 + i]
                                : rope_angle(p, i, ra.inv_freq);
}

}  // namespace xq::cuda::detail
