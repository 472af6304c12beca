#include "kernels/cpu/half.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace xq {

// The fp16 caches convert every row of the visible past at every step: with F16C (x86-64-v3
// builds) eight values per instruction; the scalar functions do the rest and every other build.
// Both round to nearest even and agree bit for bit except in NaN payloads.

void floats_to_halves(const float* in, uint16_t* out, size_t n) {
  size_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
#endif
  for (; i < n; ++i) out[i] = float_to_half(in[i]);
}

void halves_to_floats(const uint16_t* in, float* out, size_t n) {
  size_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
#endif
  for (; i < n; ++i) out[i] = half_to_float(in[i]);
}

}  // namespace xq
