// XQuant-CL's accumulator kernels: one block per row, threads across the row.
#include "kernels/cuda/cl_ops.h"
#include "kernels/cuda/cl_row.cuh"
#include "kernels/cuda/launch_util.cuh"

namespace xq::cuda {
namespace {

struct RowShape {
  int width, bits, group, words, groups;
  size_t bytes;
};

RowShape shape_of(const QuantRowLayout& l) {
  return {l.width,  l.bits, l.group, static_cast<int>(l.words()), static_cast<int>(l.groups()),
          l.bytes()};
}

__global__ void dequantize_add_kernel(const uint8_t* base, size_t page_bytes, RowShape layout,
                                      RowMap src, float* acc, int acc_stride, bool accumulate) {
  const int p = src.page[blockIdx.x];
  if (p < 0) return;
  const uint8_t* row = base + static_cast<size_t>(p) * page_bytes +
                       static_cast<size_t>(src.slot[blockIdx.x]) * layout.bytes;
  float* a = acc + static_cast<size_t>(blockIdx.x) * acc_stride;
  const int width = layout.width, bits = layout.bits;
  if (bits == 16) {
    const half* v = reinterpret_cast<const half*>(row);
    for (int j = threadIdx.x; j < width; j += blockDim.x)
      a[j] = (accumulate ? a[j] : 0.0f) + __half2float(v[j]);
    return;
  }
  const int nwords = layout.words;
  const uint32_t* words = reinterpret_cast<const uint32_t*>(row);
  const half* scales = reinterpret_cast<const half*>(row + 4 * static_cast<size_t>(nwords));
  const half* zeros = scales + layout.groups;
  const uint32_t mask = (1u << bits) - 1;
  for (int j = threadIdx.x; j < width; j += blockDim.x) {
    const size_t bit = static_cast<size_t>(j) * bits, w = bit / 32;
    uint64_t pair = words[w];
    if (w + 1 < static_cast<size_t>(nwords)) pair |= static_cast<uint64_t>(words[w + 1]) << 32;
    const float code = static_cast<float>((pair >> (bit % 32)) & mask);
    const int g = j / layout.group;
    // The CPU's z + s * code (quantizer.cpp's dequantize), unfused.
    const float d = __fadd_rn(__half2float(zeros[g]), __fmul_rn(__half2float(scales[g]), code));
    a[j] = (accumulate ? a[j] : 0.0f) + d;
  }
}

__global__ void new_deltas_kernel(const float* src, int src_stride, const float* acc, RowMap at,
                                  int width, bool subtract, float* out) {
  const float* s = src + static_cast<size_t>(blockIdx.x) * src_stride;
  float* o = out + static_cast<size_t>(blockIdx.x) * width;
  const size_t r = static_cast<size_t>(at.page[blockIdx.x]) * kPageRows + at.slot[blockIdx.x];
  const float* a = acc + r * width;
  for (int j = threadIdx.x; j < width; j += blockDim.x) o[j] = subtract ? s[j] - a[j] : s[j];
}

__global__ void rebuilt_rows_kernel(const float* acc, int width, const int* pos, const float* norm,
                                    float eps, bool one_plus, bf16* out) {
  __shared__ double scratch[32];
  const float* a = acc + static_cast<size_t>(blockIdx.x) * width;
  bf16* o = out + static_cast<size_t>(blockIdx.x) * width;
  if (pos[blockIdx.x] < 0) {
    for (int j = threadIdx.x; j < width; j += blockDim.x) o[j] = __float2bfloat16_rn(0.0f);
    return;
  }
  detail::write_rebuilt_row([a](int j) { return a[j]; }, width, norm, eps, one_plus, o, scratch);
}

}  // namespace

void dequantize_rows_add(const uint8_t* base, size_t page_bytes, QuantRowLayout layout, int n,
                         RowMap src, float* acc, int acc_stride, bool accumulate,
                         cudaStream_t stream) {
  const int b = layout.bits;
  if (b != 2 && b != 3 && b != 4 && b != 8 && b != 16)
    throw CudaError("dequantize_rows_add: bits must be 2, 3, 4, 8 or 16, got " + std::to_string(b));
  if (b != 16 && layout.group < 1)
    throw CudaError("dequantize_rows_add: group must be >= 1, got " + std::to_string(layout.group));
  const size_t align = b == 16 ? 2 : 4;
  if (reinterpret_cast<uintptr_t>(base) % align != 0 || page_bytes % align != 0)
    throw CudaError("dequantize_rows_add: store base and page_bytes must be multiples of " +
                    std::to_string(align) + " bytes");
  if (n <= 0 || layout.width <= 0) return;
  dequantize_add_kernel<<<n, detail::kThreads, 0, stream>>>(base, page_bytes, shape_of(layout), src,
                                                            acc, acc_stride, accumulate);
  check(cudaGetLastError(), "dequantize_rows_add");
}

void cl_new_deltas(const float* src, int src_stride, const float* acc, RowMap at, int n, int width,
                   bool subtract, float* out, cudaStream_t stream) {
  if (n <= 0 || width <= 0) return;
  new_deltas_kernel<<<n, detail::kThreads, 0, stream>>>(src, src_stride, acc, at, width, subtract,
                                                        out);
  check(cudaGetLastError(), "cl_new_deltas");
}

void cl_rebuilt_rows(const float* acc, int n, int width, const int* pos, const float* norm,
                     float eps, bool one_plus, bf16* out, cudaStream_t stream) {
  if (n <= 0 || width <= 0) return;
  rebuilt_rows_kernel<<<n, detail::kThreads, 0, stream>>>(acc, width, pos, norm, eps, one_plus,
                                                          out);
  check(cudaGetLastError(), "cl_rebuilt_rows");
}

void matmul_nn_add(cublasHandle_t handle, const bf16* x, const bf16* w, float* y, int n, int in,
                   int out, bool accumulate) {
  if (n <= 0 || out <= 0) return;
  // Row-major y[n, out] is column-major y^T[out, n] = w^T[out, in] x^T[in, n], and row-major
  // w[in, out] lies in memory as the column-major w^T (ld out), x as x^T (ld in).
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  check(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, out, n, in, &one, w, CUDA_R_16BF, out, x,
                     CUDA_R_16BF, in, &beta, y, CUDA_R_32F, out, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT),
        "matmul_nn_add (cublasGemmEx)");
}

}  // namespace xq::cuda
