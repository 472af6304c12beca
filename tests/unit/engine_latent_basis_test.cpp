// The GQA latent's basis on the host (engine/cache/xquant_latent.h): orthonormal rows whose span
// holds W's rows, oriented so that any solver's SVD gives the same basis.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/cache/xquant_latent.h"
#include "tests/unit/engine_random_model.h"

namespace xq {
namespace {

double dot(const float* a, const float* b, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += double(a[i]) * b[i];
  return s;
}

TEST(LatentBasis, OrientRowsMakesEachRowSumNonNegative) {
  std::vector<float> m = {0.1f,  -0.9f, 0.3f,   // flipped
                          0.5f,  -0.2f, 0.1f,   // kept
                          -0.4f, 0.4f,  0.0f};  // sums to zero: kept
  const std::vector<float> signs = orient_rows(m.data(), 3, 3);
  EXPECT_EQ(signs, (std::vector<float>{-1.0f, 1.0f, 1.0f}));
  EXPECT_EQ(m, (std::vector<float>{-0.1f, 0.9f, -0.3f, 0.5f, -0.2f, 0.1f, -0.4f, 0.4f, 0.0f}));
  const std::vector<float> again = orient_rows(m.data(), 3, 3);
  EXPECT_EQ(again, (std::vector<float>{1.0f, 1.0f, 1.0f}));
}

// Orthonormal, oriented, and x U^T U W^T = x W^T: the latent loses nothing of K.
TEST(LatentBasis, RowSpaceBasisIsOrthonormalOrientedAndSpansW) {
  const int rows = 24, cols = 80;
  const std::vector<float> w = gaussian(rows * cols, 7), x = gaussian(cols, 8);
  const std::vector<float> u = row_space_basis(w.data(), rows, cols);
  ASSERT_EQ(u.size(), w.size());
  for (int i = 0; i < rows; ++i) {
    const float* ui = u.data() + i * cols;
    for (int j = 0; j < rows; ++j) EXPECT_NEAR(dot(ui, u.data() + j * cols, cols), i == j, 1e-5);
    double sum = 0;
    for (int c = 0; c < cols; ++c) sum += ui[c];
    EXPECT_GE(sum, 0.0) << "row " << i;
  }
  std::vector<float> lifted(cols, 0.0f);  // x U^T U
  for (int i = 0; i < rows; ++i) {
    const float* ui = u.data() + i * cols;
    const double c = dot(x.data(), ui, cols);
    for (int k = 0; k < cols; ++k) lifted[k] += static_cast<float>(c * ui[k]);
  }
  for (int r = 0; r < rows; ++r) {
    const float* wr = w.data() + r * cols;
    EXPECT_NEAR(dot(lifted.data(), wr, cols), dot(x.data(), wr, cols), 1e-3) << "row " << r;
  }
}

}  // namespace
}  // namespace xq
