// Rotary position embedding in the Hugging Face "rotate_half" layout: dimension i of a head is
// rotated together with dimension i + head_dim/2.
#pragma once

#include <cstddef>
#include <vector>

namespace xq {

enum class RopeKind { None, Linear, Llama3 };

struct RopeFreqParams {
  int head_dim = 0;
  double theta = 10000.0;
  RopeKind kind = RopeKind::None;
  double factor = 1.0;
  // Llama 3 only.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_max_position = 8192;
};

// The head_dim/2 inverse frequencies theta^(-2i/d), rescaled as the scaling kind says (linear:
// divided by the factor; llama3: long wavelengths divided, short kept, a smooth ramp between).
std::vector<double> rope_inv_freq(const RopeFreqParams& p);

// Rotates `heads` heads of `head_dim` in each of `rows` rows (row r at position pos[r], rows
// `row_stride` floats apart) in place.
void rope_apply(float* x, int rows, int heads, int head_dim, size_t row_stride, const int* pos,
                const std::vector<double>& inv_freq);

}  // namespace xq
