// Reference CPU ops of the transformer: row-major fp32 buffers, shapes passed explicitly.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xq {

// y[n, out] = x[n, in] · W[out, in]^T (+ bias[out] when non-null), through OpenBLAS.
void matmul_nt(const float* x, const float* w, const float* bias, float* y, int n, int in, int out);

// y = x / rms(x) * w over each of `rows` rows of `dim`; with `one_plus` the weight is (1 + w),
// Gemma's convention. In place is fine (y == x).
void rmsnorm(const float* x, const float* w, float* y, int rows, int dim, float eps, bool one_plus);

// out[i] = silu(gate[i]) * up[i] (SwiGLU), out[i] = gelu_tanh(gate[i]) * up[i] (GeGLU).
void silu_mul(const float* gate, const float* up, float* out, size_t n);
void gelu_tanh_mul(const float* gate, const float* up, float* out, size_t n);

// In-place softmax of one row.
void softmax(float* x, int n);

// x = cap * tanh(x / cap) over n values (Gemma's logit soft-capping); cap <= 0 leaves x alone.
void softcap(float* x, size_t n, float cap);

// y += x over n values.
void add_inplace(float* y, const float* x, size_t n);

}  // namespace xq
