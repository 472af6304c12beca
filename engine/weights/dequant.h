// Dequantization of the block-quantized GGUF dtypes (Q4_0/1, Q5_0/1, Q8_0, Q2_K..Q6_K, IQ4_NL,
// IQ4_XS) to fp32.
//
// convert_to_f32 handles the dense dtypes itself (dtype_convert.cpp) and hands every other dtype
// to dequantize_quantized (dequant.cpp): a new block format is one more case there (its decoder
// may live in another dequant_*.cpp, declared in dequant_blocks.h).
#pragma once

#include "engine/weights/weight_source.h"

namespace xq {

// Writes t.numel() floats to `out` and returns true when t.dtype is a block format this build
// can decode; returns false (writing nothing) otherwise. May throw WeightError naming t.file and
// t.name when the data is inconsistent with the shape (e.g. t.nbytes too small).
bool dequantize_quantized(const TensorInfo& t, float* out);

}  // namespace xq
