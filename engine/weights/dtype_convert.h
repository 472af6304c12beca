// Element-wise conversion of the dense checkpoint dtypes (F32, F16, BF16) to fp32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "engine/weights/weight_source.h"

namespace xq {

// Bytes per element of a dense dtype; 0 for the block-quantized ones.
size_t dense_dtype_size(DType t);

// IEEE binary16 -> fp32, exact for every input (subnormals, infinities, NaN payloads).
inline float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;  // exponent and mantissa
  // Placing em in the low bits of an fp32 exponent field keeps the binade ordering, so one
  // multiply by 2^(127-15) rebiases normals and normalizes subnormals alike; only inf/NaN
  // (exponent 31) need the fp32 all-ones exponent instead. No branches, so loops vectorize.
  uint32_t shifted = em << 13;
  float magnitude;
  std::memcpy(&magnitude, &shifted, 4);
  magnitude *= 0x1.0p112f;
  uint32_t bits;
  std::memcpy(&bits, &magnitude, 4);
  bits = em >= 0x7c00u ? (0x7f800000u | shifted) : bits;
  bits |= sign;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// bfloat16 is the top half of an fp32.
inline float bf16_bits_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// `src` need not be aligned: mmapped tensors start wherever the file header ends.
void f16_to_f32(const uint8_t* src, float* out, size_t n);
void bf16_to_f32(const uint8_t* src, float* out, size_t n);

}  // namespace xq
