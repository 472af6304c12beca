// XQuant-CL's kernels (kernels/cuda/cl_rows.cu): the accumulator of a step's rows in fp32, fed
// by the cached deltas, the deltas of new rows against it, and the rebuilt rows K and V are
// projected from. CPU reference: engine/cache/xquant_cl_cache.cpp and xquant_cl_chain.h (the
// running sum), quantizer.h (dequantize), kernels/cpu/ops.h (rmsnorm).
#pragma once

#include "kernels/cuda/cuda_ops.h"

namespace xq::cuda {

// acc[i, :] = (accumulate ? acc[i, :] : 0) + dequantize(row i) for rows i < n whose src.page[i]
// >= 0 (rows of a page store laid out as quantize_rows writes them; 16 bits: fp16 values), in
// fp32 as the CPU's running sum adds them; rows with a negative page are left alone. acc's rows
// are acc_stride floats apart.
void dequantize_rows_add(const uint8_t* base, size_t page_bytes, QuantRowLayout layout, int n,
                         RowMap src, float* acc, int acc_stride, bool accumulate,
                         cudaStream_t stream);

// The delta a new row caches: out[i, :] = src[i, :] - (subtract ? acc[r, :] : 0) for i < n, where
// r = at.page[i] * kPageRows + at.slot[i] is the row's place among the accumulator's rows (its
// workspace row). src's rows are src_stride floats apart, acc's and out's `width`.
void cl_new_deltas(const float* src, int src_stride, const float* acc, RowMap at, int n, int width,
                   bool subtract, float* out, cudaStream_t stream);

// The rows K and V are rebuilt from: out[i, :] = bf16(acc[i, :]), or with `norm` (the residual
// stream's deltas) bf16(rmsnorm(acc[i, :]) as rmsnorm in kernels/cpu/ops.h, one_plus for Gemma);
// rows whose pos[i] < 0 (workspace padding) get zeros, whatever the accumulator holds there.
void cl_rebuilt_rows(const float* acc, int n, int width, const int* pos, const float* norm,
                     float eps, bool one_plus, bf16* out, cudaStream_t stream);

// y[n, out] = x[n, in] w[in, out] + (accumulate ? y : 0): bf16 operands, fp32 accumulation and
// output (cuBLAS). Lifts latent rows back to X space with the basis Ukv [2 kv_dim, hidden] and
// adds them to the accumulator in one product.
void matmul_nn_add(cublasHandle_t handle, const bf16* x, const bf16* w, float* y, int n, int in,
                   int out, bool accumulate);

}  // namespace xq::cuda
