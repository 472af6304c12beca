#include "kernels/cpu/skinny_matmul.h"

#include <cstddef>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace xq {
namespace {

#if defined(__AVX2__) && defined(__FMA__)
float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  return _mm_cvtss_f32(s);
}
#endif

// R rows of x against every row of W: each weight row is loaded once and used R times.
template <int R>
void rows_block(const float* x, const float* w, float* y, int in, int out) {
  for (int o = 0; o < out; ++o) {
    const float* wr = w + static_cast<size_t>(o) * in;
    float sum[R] = {};
    int i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (; i + 8 <= in; i += 8) {
      const __m256 wv = _mm256_loadu_ps(wr + i);
      for (int r = 0; r < R; ++r) {
        acc[r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + static_cast<size_t>(r) * in + i), acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) sum[r] = hsum(acc[r]);
#endif
    for (; i < in; ++i) {
      for (int r = 0; r < R; ++r) sum[r] += wr[i] * x[static_cast<size_t>(r) * in + i];
    }
    for (int r = 0; r < R; ++r) y[static_cast<size_t>(r) * out + o] = sum[r];
  }
}

}  // namespace

void skinny_matmul_nt(const float* x, const float* w, float* y, int n, int in, int out) {
  int r = 0;
  for (; r + 4 <= n; r += 4)
    rows_block<4>(x + static_cast<size_t>(r) * in, w, y + static_cast<size_t>(r) * out, in, out);
  const float* xr = x + static_cast<size_t>(r) * in;
  float* yr = y + static_cast<size_t>(r) * out;
  switch (n - r) {
    case 3:
      rows_block<3>(xr, w, yr, in, out);
      break;
    case 2:
      rows_block<2>(xr, w, yr, in, out);
      break;
    case 1:
      rows_block<1>(xr, w, yr, in, out);
      break;
    default:
      break;
  }
}

}  // namespace xq
