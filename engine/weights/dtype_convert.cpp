// convert_to_f32 and the dense dtype converters.
#include "engine/weights/dtype_convert.h"

#include <algorithm>
#include <string>

#include "engine/weights/dequant.h"
#include "kernels/cpu/parallel.h"

namespace xq {
namespace {

// Tensors this large convert on all cores: the copy is memory-bound and a 1 GB checkpoint
// should load in about a second.
constexpr int kChunk = 1 << 18;

template <typename Fn>
void convert_chunked(const uint8_t* src, float* out, size_t n, size_t elem_size, Fn convert) {
  if (n < 2 * static_cast<size_t>(kChunk)) {
    convert(src, out, n);
    return;
  }
  const size_t chunks = (n + kChunk - 1) / kChunk;
  parallel_for(static_cast<int>(chunks), hardware_threads(), 1, [&](int begin, int end) {
    const size_t first = static_cast<size_t>(begin) * kChunk;
    const size_t last = std::min(n, static_cast<size_t>(end) * kChunk);
    convert(src + first * elem_size, out + first, last - first);
  });
}

}  // namespace

size_t dense_dtype_size(DType t) {
  switch (t) {
    case DType::F32:
      return 4;
    case DType::F16:
    case DType::BF16:
      return 2;
    default:
      return 0;
  }
}

void f16_to_f32(const uint8_t* src, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    out[i] = f16_bits_to_f32(h);
  }
}

void bf16_to_f32(const uint8_t* src, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    out[i] = bf16_bits_to_f32(h);
  }
}

void convert_to_f32(const TensorInfo& t, float* out) {
  const int64_t n = t.numel();
  const size_t elem = dense_dtype_size(t.dtype);
  if (elem == 0) {
    if (dequantize_quantized(t, out)) return;
    throw WeightError(t.file + ": tensor " + t.name + " has dtype " + dtype_name(t.dtype) +
                      ", which cannot be converted to fp32 (not supported yet)");
  }
  if (t.nbytes < static_cast<size_t>(n) * elem) {
    throw WeightError(t.file + ": tensor " + t.name + " holds " + std::to_string(t.nbytes) +
                      " bytes, fewer than its " + std::to_string(n) + " " + dtype_name(t.dtype) +
                      " elements need");
  }
  // A tensor with a zero dimension has nothing to convert, and `out` may then be null.
  if (n == 0) return;
  const size_t count = static_cast<size_t>(n);
  switch (t.dtype) {
    case DType::F32:
      convert_chunked(t.data, out, count, 4,
                      [](const uint8_t* s, float* o, size_t k) { std::memcpy(o, s, k * 4); });
      break;
    case DType::F16:
      convert_chunked(t.data, out, count, 2, f16_to_f32);
      break;
    case DType::BF16:
      convert_chunked(t.data, out, count, 2, bf16_to_f32);
      break;
    default:
      break;  // dense_dtype_size() is 0 for every other dtype
  }
}

}  // namespace xq
