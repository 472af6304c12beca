#include "kernels/cpu/ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <bit>

#include "kernels/cpu/skinny_matmul.h"

namespace xq {
namespace {

// Up to this many rows a weight-streaming loop beats OpenBLAS's sgemm, whose packing of W
// dominates small products (measured: 1 row 0.5 ms vs 3 ms, 8 rows 2.3 ms vs 4.1 ms for a
// 3072x768 weight on this machine).
constexpr int kSkinnyRows = 8;

}  // namespace

void matmul_nt(const float* x, const float* w, const float* bias, float* y, int n, int in,
               int out) {
  if (n <= 0 || out <= 0) return;
  if (n <= kSkinnyRows) {
    skinny_matmul_nt(x, w, y, n, in, out);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 0.0f, y,
                out);
  }
  if (bias) {
    for (int r = 0; r < n; ++r) add_inplace(y + static_cast<size_t>(r) * out, bias, out);
  }
}

void rmsnorm(const float* x, const float* w, float* y, int rows, int dim, float eps,
             bool one_plus) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<size_t>(r) * dim;
    float* yr = y + static_cast<size_t>(r) * dim;
    // The sum of squares in double: hidden states of large models carry outliers of 1e3 and more.
    double ss = 0.0;
    for (int i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / dim + eps));
    for (int i = 0; i < dim; ++i) yr[i] = xr[i] * inv * (one_plus ? 1.0f + w[i] : w[i]);
  }
}

void silu_mul(const float* gate, const float* up, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void gelu_tanh_mul(const float* gate, const float* up, float* out, size_t n) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  for (size_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float t = std::tanh(kSqrt2OverPi * (g + 0.044715f * g * g * g));
    out[i] = 0.5f * g * (1.0f + t) * up[i];
  }
}

void softmax(float* x, int n) {
  if (n <= 0) return;
  float mx = x[0];
  for (int i = 1; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

void softcap(float* x, size_t n, float cap) {
  if (cap <= 0.0f) return;
  for (size_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] / cap);
}

void add_inplace(float* y, const float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += x[i];
}

double exp_shifted(const float* x, size_t n, float scale, float shift, float* out) {
  // exp(y) = 2^k * exp(r): k = round(y / ln 2), r = y - k ln 2 in [-ln 2 / 2, ln 2 / 2] with
  // ln 2 split in two (Cody-Waite: k * kLn2Hi is exact), exp(r) by its Taylor series to degree
  // 6 (error below 2e-7 relative there). No branches or libm calls, and the clamp in a loop of
  // its own: GCC vectorizes a max feeding more arithmetic only with -fno-trapping-math.
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds
  // Clamped where 2^k is far below a normal float (-inf too): the exponent's floor at 0 below
  // then makes it exactly 0.
  for (size_t i = 0; i < n; ++i) out[i] = std::max(x[i] * scale - shift, -104.0f);
  for (size_t i = 0; i < n; ++i) {
    const float y = out[i];
    const float k = (y * kLog2e + kRound) - kRound;
    const float r = (y - k * kLn2Hi) - k * kLn2Lo;
    const float p =
        1.0f +
        r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r / 720)))));
    const int32_t biased = std::max(static_cast<int32_t>(k) + 127, int32_t{0});
    out[i] = p * std::bit_cast<float>(biased << 23);
  }
  return sum_floats(out, n);
}

double sum_floats(const float* x, size_t n) {
  // Eight running sums: one would be a chain of dependent adds, four cycles per element.
  double lanes[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) lanes[j] += x[i + j];
  }
  double sum = 0.0;
  for (; i < n; ++i) sum += x[i];
  for (double l : lanes) sum += l;
  return sum;
}

}  // namespace xq
