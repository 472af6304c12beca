#include "kernels/cpu/rope.h"

#include <cmath>
#include <numbers>

namespace xq {

std::vector<double> rope_inv_freq(const RopeFreqParams& p) {
  const int half = p.head_dim / 2;
  std::vector<double> inv(half);
  for (int i = 0; i < half; ++i) inv[i] = std::pow(p.theta, -2.0 * i / p.head_dim);
  if (p.kind == RopeKind::Linear) {
    for (double& f : inv) f /= p.factor;
  } else if (p.kind == RopeKind::Llama3) {
    const double old_len = p.original_max_position;
    const double low_freq_wavelen = old_len / p.low_freq_factor;
    const double high_freq_wavelen = old_len / p.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_freq_wavelen) {
        f /= p.factor;  // long wavelengths: interpolate fully
      } else if (wavelen >= high_freq_wavelen) {
        // Between the two: blend the interpolated and the original frequency.
        const double smooth =
            (old_len / wavelen - p.low_freq_factor) / (p.high_freq_factor - p.low_freq_factor);
        f = (1.0 - smooth) * f / p.factor + smooth * f;
      }
    }
  }
  return inv;
}

void rope_apply(float* x, int rows, int heads, int head_dim, size_t row_stride, const int* pos,
                const std::vector<double>& inv_freq) {
  const int half = head_dim / 2;
  std::vector<float> cs(half), sn(half);
  for (int r = 0; r < rows; ++r) {
    for (int i = 0; i < half; ++i) {
      // The angle in double: positions reach 1e5 and fp32 would lose the low frequencies' phase.
      const double a = static_cast<double>(pos[r]) * inv_freq[i];
      cs[i] = static_cast<float>(std::cos(a));
      sn[i] = static_cast<float>(std::sin(a));
    }
    float* row = x + static_cast<size_t>(r) * row_stride;
    for (int h = 0; h < heads; ++h) {
      float* v = row + static_cast<size_t>(h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = b * cs[i] + a * sn[i];
      }
    }
  }
}

}  // namespace xq
