// Per-block decoders of the GGML quantized formats, shared by the dequant*.cpp files.
//
// Each decoder reads one block at `b` (its byte size is fixed by the format, see ggml_types.cpp)
// and writes the block's values, in order, to `y`. dequantize_quantized (dequant.cpp) picks one
// by DType and checks sizes; the decoders themselves trust their input length.
#pragma once

#include <cstdint>
#include <cstring>

#include "engine/weights/dtype_convert.h"

namespace xq::dequant {

inline float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_bits_to_f32(h);
}

// K-quants with 2 and 3 bits (dequant_kquants_low.cpp).
void block_q2_k(const uint8_t* b, float* y);
void block_q3_k(const uint8_t* b, float* y);
// Non-linear 4-bit formats indexing a fixed 16-entry table (dequant_iq4.cpp).
void block_iq4_nl(const uint8_t* b, float* y);
void block_iq4_xs(const uint8_t* b, float* y);

}  // namespace xq::dequant
