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

// out[i] = exp(x[i] * scale - shift) for x[i] * scale - shift <= 0 (relative error < 1e-6),
// 0 where that is below a normal float (under about -87.3) and for x[i] = -inf; returns the sum
// in double. A polynomial the compiler
// vectorizes: the sampler runs it over a 100k+ vocabulary per token, where libm's exp took
// ~1.5 ms.
double exp_shifted(const float* x, size_t n, float scale, float shift, float* out);

// The sum of n floats in double, over eight independent running sums (vectorized).
double sum_floats(const float* x, size_t n);

// y += x over n values.
void add_inplace(float* y, const float* x, size_t n);

}  // namespace xq
