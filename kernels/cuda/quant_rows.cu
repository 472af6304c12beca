// Quantization of rows into paged stores and back, bit-identical to engine/cache/quantizer.cpp
// (quantize / dequantize) on the same row: one block per row.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/launch_util.cuh"
#include "kernels/cuda/quant_math.cuh"

namespace xq::cuda {
namespace {

using detail::group_params;
using detail::half_bits_to_float;
using detail::quant_code;

constexpr int kQuantThreads = 256;

// A row layout's sizes, taken on the host (QuantRowLayout's members are host functions).
struct RowShape {
  int width, bits, group, words, groups;
  size_t bytes;
};

RowShape shape_of(const QuantRowLayout& l) {
  RowShape s;
  s.width = l.width;
  s.bits = l.bits;
  s.group = l.group;
  s.words = static_cast<int>(l.words());
  s.groups = static_cast<int>(l.groups());
  s.bytes = l.bytes();
  return s;
}

// The start of row i of the store, or null when the map skips it.
__device__ inline uint8_t* row_at(uint8_t* base, size_t page_bytes, size_t row_bytes, RowMap map,
                                  int i) {
  const int p = map.page[i];
  if (p < 0) return nullptr;
  return base + static_cast<size_t>(p) * page_bytes + static_cast<size_t>(map.slot[i]) * row_bytes;
}

// The minimum of a group as the CPU's sequential std::min finds it: among equal values (+0 and
// -0) the first one wins, which decides the sign of a zero point of 0.
struct MinAt {
  float v;
  int i;
};
__device__ inline MinAt better_min(MinAt a, MinAt b) {
  return (b.v < a.v || (b.v == a.v && b.i < a.i)) ? b : a;
}

// A warp quantizes one group: finite range, fp16 zero and scale, codes into `codes`.
__device__ void quantize_group(const float* x, int begin, int len, int bits, uint8_t* codes,
                               half* scale, half* zero) {
  const int lane = threadIdx.x & 31;
  MinAt lo{INFINITY, 0x7fffffff};
  float hi = -INFINITY;
  for (int k = lane; k < len; k += 32) {
    const float v = x[begin + k];
    if (!isfinite(v)) continue;
    lo = better_min(lo, MinAt{v, k});
    hi = fmaxf(hi, v);
  }
  for (int o = 16; o > 0; o >>= 1) {
    const MinAt other{__shfl_xor_sync(0xffffffffu, lo.v, o), __shfl_xor_sync(0xffffffffu, lo.i, o)};
    lo = better_min(lo, other);
    hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, o));
  }
  const detail::GroupParams q = group_params(lo.v, hi, bits);
  const float z = half_bits_to_float(q.zero), s = half_bits_to_float(q.scale);
  if (lane == 0) {
    *scale = __ushort_as_half(q.scale);
    *zero = __ushort_as_half(q.zero);
  }
  for (int k = lane; k < len; k += 32)
    codes[begin + k] = static_cast<uint8_t>(quant_code(x[begin + k], z, s, bits));
}

// Block per row: warps quantize groups into shared codes, then one thread per output word packs
// the codes that overlap it (LSB-first; a code straddling two words is split between them).
__global__ void quantize_rows_kernel(const float* x, size_t x_stride, RowShape layout,
                                     uint8_t* base, size_t page_bytes, RowMap map) {
  extern __shared__ uint8_t codes[];
  uint8_t* row = row_at(base, page_bytes, layout.bytes, map, blockIdx.x);
  if (!row) return;
  const int width = layout.width, bits = layout.bits, group = layout.group;
  const float* xr = x + blockIdx.x * x_stride;
  if (bits == 16) {
    half* out = reinterpret_cast<half*>(row);
    for (int j = threadIdx.x; j < width; j += blockDim.x) out[j] = __float2half_rn(xr[j]);
    return;
  }
  const int nwords = layout.words, ngroups = layout.groups;
  uint32_t* words = reinterpret_cast<uint32_t*>(row);
  half* scales = reinterpret_cast<half*>(row + 4 * static_cast<size_t>(nwords));
  half* zeros = scales + ngroups;
  const int warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int g = warp; g < ngroups; g += warps) {
    const int begin = g * group;
    const int len = min(group, width - begin);
    quantize_group(xr, begin, len, bits, codes, scales + g, zeros + g);
  }
  __syncthreads();
  for (int w = threadIdx.x; w < nwords; w += blockDim.x) {
    const long long first_bit = 32LL * w;
    const int i0 = static_cast<int>(first_bit / bits);
    const int i1 = min(width - 1, static_cast<int>((first_bit + 31) / bits));
    uint32_t word = 0;
    for (int i = i0; i <= i1; ++i) {
      const int shift = static_cast<int>(static_cast<long long>(i) * bits - first_bit);
      const uint32_t c = codes[i];
      word |= shift >= 0 ? c << shift : c >> -shift;
    }
    words[w] = word;
  }
}

__global__ void dequantize_rows_kernel(const uint8_t* base, size_t page_bytes, RowShape layout,
                                       RowMap map, bf16* out, size_t out_stride) {
  const uint8_t* row =
      row_at(const_cast<uint8_t*>(base), page_bytes, layout.bytes, map, blockIdx.x);
  if (!row) return;
  const int width = layout.width, bits = layout.bits, group = layout.group;
  bf16* o = out + blockIdx.x * out_stride;
  if (bits == 16) {
    const half* v = reinterpret_cast<const half*>(row);
    for (int j = threadIdx.x; j < width; j += blockDim.x) {
      o[j] = __float2bfloat16_rn(__half2float(v[j]));
    }
    return;
  }
  const size_t nwords = layout.words;
  const uint32_t* words = reinterpret_cast<const uint32_t*>(row);
  const half* scales = reinterpret_cast<const half*>(row + 4 * nwords);
  const half* zeros = scales + layout.groups;
  const uint32_t mask = (1u << bits) - 1;
  for (int j = threadIdx.x; j < width; j += blockDim.x) {
    const size_t bit = static_cast<size_t>(j) * bits, w = bit / 32;
    uint64_t pair = words[w];
    if (w + 1 < nwords) pair |= static_cast<uint64_t>(words[w + 1]) << 32;
    const float code = static_cast<float>((pair >> (bit % 32)) & mask);
    const int g = j / group;
    o[j] = __float2bfloat16_rn(__fmaf_rn(__half2float(scales[g]), code, __half2float(zeros[g])));
  }
}

// The same for rows whose width and group are multiples of 8: a thread turns 8 consecutive codes
// (at most 64 bits, within two words; one group) into one 16-byte store. At 2-4 bits the scalar
// kernel's per-value loads and 2-byte stores left it at a quarter of the memory bandwidth.
__global__ void dequantize_rows8_kernel(const uint8_t* base, size_t page_bytes, RowShape layout,
                                        RowMap map, bf16* out, size_t out_stride) {
  const uint8_t* row =
      row_at(const_cast<uint8_t*>(base), page_bytes, layout.bytes, map, blockIdx.x);
  if (!row) return;
  const int width = layout.width, bits = layout.bits, group = layout.group;
  const int nwords = layout.words;
  const uint32_t* words = reinterpret_cast<const uint32_t*>(row);
  const half* scales = reinterpret_cast<const half*>(row + 4 * static_cast<size_t>(nwords));
  const half* zeros = scales + layout.groups;
  const uint64_t mask = (1u << bits) - 1;
  uint4* o = reinterpret_cast<uint4*>(out + blockIdx.x * out_stride);
  for (int c = threadIdx.x; c < width / 8; c += blockDim.x) {
    const int bit = c * 8 * bits, w = bit / 32;
    uint64_t pair = words[w];
    if (w + 1 < nwords) pair |= static_cast<uint64_t>(words[w + 1]) << 32;
    pair >>= bit % 32;
    const int g = (c * 8) / group;
    const float sc = __half2float(scales[g]), ze = __half2float(zeros[g]);
    __align__(16) bf16 v[8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
      v[i] =
          __float2bfloat16_rn(__fmaf_rn(sc, static_cast<float>((pair >> (i * bits)) & mask), ze));
    o[c] = *reinterpret_cast<const uint4*>(v);
  }
}

// Words are stored as uint32 and fp16 rows as half: a misaligned row would fault on the device
// (a sticky error that ends the context), so it is refused here.
void check_alignment(const void* base, size_t page_bytes, const QuantRowLayout& layout,
                     const char* what) {
  const size_t align = layout.bits == 16 ? 2 : 4;
  if (reinterpret_cast<uintptr_t>(base) % align != 0 || page_bytes % align != 0) {
    throw CudaError(std::string(what) + ": store base and page_bytes (" +
                    std::to_string(page_bytes) + ") must be multiples of " + std::to_string(align) +
                    " bytes");
  }
}

void check_layout(const QuantRowLayout& layout, const char* what) {
  const int b = layout.bits;
  if (b != 2 && b != 3 && b != 4 && b != 8 && b != 16) {
    throw CudaError(std::string(what) + ": bits must be 2, 3, 4, 8 or 16, got " +
                    std::to_string(b));
  }
  if (b != 16 && layout.group < 1) {
    throw CudaError(std::string(what) + ": group must be >= 1, got " +
                    std::to_string(layout.group));
  }
}

}  // namespace

void quantize_rows(const float* x, int n, QuantRowLayout layout, uint8_t* base, size_t page_bytes,
                   RowMap map, cudaStream_t stream, int x_stride) {
  check_layout(layout, "quantize_rows");
  check_alignment(base, page_bytes, layout, "quantize_rows");
  if (n <= 0 || layout.width <= 0) return;
  const size_t shared = layout.bits == 16 ? 0 : static_cast<size_t>(layout.width);
  if (shared > 48 * 1024) {
    throw CudaError("quantize_rows: width " + std::to_string(layout.width) +
                    " exceeds the 49152 codes a block stages");
  }
  const size_t stride = x_stride > 0 ? x_stride : layout.width;
  quantize_rows_kernel<<<n, kQuantThreads, shared, stream>>>(x, stride, shape_of(layout), base,
                                                             page_bytes, map);
  check(cudaGetLastError(), "quantize_rows");
}

void dequantize_rows(const uint8_t* base, size_t page_bytes, QuantRowLayout layout, int n,
                     RowMap map, bf16* out, cudaStream_t stream, int out_stride) {
  check_layout(layout, "dequantize_rows");
  check_alignment(base, page_bytes, layout, "dequantize_rows");
  if (n <= 0 || layout.width <= 0) return;
  const size_t stride = out_stride > 0 ? out_stride : layout.width;
  if (layout.bits != 16 && layout.width % 8 == 0 && layout.group % 8 == 0 && stride % 8 == 0 &&
      reinterpret_cast<uintptr_t>(out) % 16 == 0) {
    dequantize_rows8_kernel<<<n, detail::kThreads, 0, stream>>>(base, page_bytes, shape_of(layout),
                                                                map, out, stride);
  } else {
    dequantize_rows_kernel<<<n, detail::kThreads, 0, stream>>>(base, page_bytes, shape_of(layout),
                                                               map, out, stride);
  }
  check(cudaGetLastError(), "dequantize_rows");
}

}  // namespace xq::cuda
