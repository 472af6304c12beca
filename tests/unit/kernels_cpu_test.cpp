// Tests of the CPU reference kernels against direct formulas and naive loops.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>
#include <random>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/half.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/rope.h"
#include "tests/unit/test_random.h"

namespace xq {
namespace {

using test::randn;

TEST(Matmul, MatchesNaiveLoopsWithBias) {
  const int n = 5, in = 37, out = 11;
  auto x = randn(n * in, 1), w = randn(out * in, 2), b = randn(out, 3);
  std::vector<float> y(n * out);
  matmul_nt(x.data(), w.data(), b.data(), y.data(), n, in, out);
  for (int r = 0; r < n; ++r) {
    for (int o = 0; o < out; ++o) {
      double ref = b[o];
      for (int i = 0; i < in; ++i) ref += double(x[r * in + i]) * w[o * in + i];
      EXPECT_NEAR(y[r * out + o], ref, 1e-4) << r << "," << o;
    }
  }
}

TEST(Matmul, EveryRowCountAgreesAcrossTheSkinnyAndGemmPaths) {
  const int in = 72, out = 9;
  auto w = randn(out * in, 11);
  for (int n = 1; n <= 12; ++n) {
    auto x = randn(n * in, 12 + n);
    std::vector<float> y(n * out);
    matmul_nt(x.data(), w.data(), nullptr, y.data(), n, in, out);
    for (int r = 0; r < n; ++r) {
      for (int o = 0; o < out; ++o) {
        double ref = 0;
        for (int i = 0; i < in; ++i) ref += double(x[r * in + i]) * w[o * in + i];
        ASSERT_NEAR(y[r * out + o], ref, 1e-4) << "n=" << n << " row " << r << " out " << o;
      }
    }
  }
}

TEST(ExpShifted, MatchesExpWithinAMillionthAndZeroesTheFloor) {
  std::vector<float> x = randn(4099, 99, 20.0f);
  x[5] = -std::numeric_limits<float>::infinity();
  x[6] = -1000.0f;  // far below the floor after the shift
  const float scale = 1.0f / 0.7f;
  float shift = -std::numeric_limits<float>::infinity();
  for (float v : x) shift = std::max(shift, v * scale);
  std::vector<float> out(x.size());
  const double sum = exp_shifted(x.data(), x.size(), scale, shift, out.data());
  double want_sum = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double y = static_cast<double>(x[i] * scale - shift);
    const double want = std::exp(y);
    want_sum += want;
    if (y < -88.0) {
      EXPECT_EQ(out[i], 0.0f) << i;
    } else if (y > -87.0) {
      EXPECT_NEAR(out[i] / want, 1.0, 1e-6) << "x " << x[i] << " y " << y;
    }
  }
  EXPECT_EQ(out[5], 0.0f);
  EXPECT_EQ(out[6], 0.0f);
  EXPECT_NEAR(sum / want_sum, 1.0, 1e-6);
  // The largest input gives exp(0) = 1 (up to the rounding of x * scale - shift, which the
  // compiler may fuse).
  float top = 0.0f;
  for (float v : out) top = std::max(top, v);
  EXPECT_NEAR(top, 1.0f, 1e-5f);
}

TEST(RmsNorm, PlainAndOnePlusWeights) {
  const int dim = 16;
  auto x = randn(2 * dim, 4), w = randn(dim, 5);
  std::vector<float> y(2 * dim), y1(2 * dim);
  rmsnorm(x.data(), w.data(), y.data(), 2, dim, 1e-6f, false);
  rmsnorm(x.data(), w.data(), y1.data(), 2, dim, 1e-6f, true);
  for (int r = 0; r < 2; ++r) {
    double ss = 0;
    for (int i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
    const double inv = 1.0 / std::sqrt(ss / dim + 1e-6);
    for (int i = 0; i < dim; ++i) {
      EXPECT_NEAR(y[r * dim + i], x[r * dim + i] * inv * w[i], 1e-5);
      EXPECT_NEAR(y1[r * dim + i], x[r * dim + i] * inv * (1.0 + w[i]), 1e-5);
    }
  }
}

TEST(Rope, RotatesPairsHalfApartByPositionTimesFrequency) {
  const int heads = 2, d = 8, rows = 3;
  auto x = randn(rows * heads * d, 6);
  auto y = x;
  const int pos[rows] = {0, 7, 1000};
  RopeFreqParams p;
  p.head_dim = d;
  p.theta = 500.0;
  const auto inv = rope_inv_freq(p);
  rope_apply(y.data(), rows, heads, d, heads * d, pos, inv);
  for (int r = 0; r < rows; ++r) {
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < d / 2; ++i) {
        const double a = pos[r] * std::pow(500.0, -2.0 * i / d);
        const float* v = &x[(r * heads + h) * d];
        const float* o = &y[(r * heads + h) * d];
        EXPECT_NEAR(o[i], v[i] * std::cos(a) - v[i + d / 2] * std::sin(a), 1e-5);
        EXPECT_NEAR(o[i + d / 2], v[i + d / 2] * std::cos(a) + v[i] * std::sin(a), 1e-5);
      }
    }
  }
}

TEST(Rope, Llama3ScalingKeepsHighFrequenciesAndDividesLowOnes) {
  RopeFreqParams p;
  p.head_dim = 128;
  p.theta = 500000.0;
  const auto plain = rope_inv_freq(p);
  p.kind = RopeKind::Llama3;
  p.factor = 8.0;
  const auto scaled = rope_inv_freq(p);
  for (size_t i = 0; i < plain.size(); ++i) {
    const double wavelen = 2 * std::numbers::pi / plain[i];
    if (wavelen < 8192.0 / 4.0) {
      EXPECT_DOUBLE_EQ(scaled[i], plain[i]);
    }
    if (wavelen > 8192.0) {
      EXPECT_DOUBLE_EQ(scaled[i], plain[i] / 8.0);
    }
    EXPECT_LE(scaled[i], plain[i]);
    EXPECT_GE(scaled[i], plain[i] / 8.0 * (1 - 1e-12));
  }
  p.kind = RopeKind::Linear;
  p.factor = 4.0;
  const auto lin = rope_inv_freq(p);
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_DOUBLE_EQ(lin[i], plain[i] / 4.0);
}

// The array conversions (F16C in x86-64-v3 builds) against the scalar ones: every half, and
// float bit patterns covering every exponent (ties, subnormals, overflow, inf, NaN included).
TEST(Half, ArrayConversionsAgreeWithTheScalarOnes) {
  std::vector<uint16_t> halves(0x10000);
  for (uint32_t h = 0; h < 0x10000; ++h) halves[h] = static_cast<uint16_t>(h);
  std::vector<float> floats(halves.size() + 3);  // + 3: a scalar tail after the vector loop
  halves_to_floats(halves.data(), floats.data(), halves.size());
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float want = half_to_float(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(floats[h])) << h;
    } else {
      EXPECT_EQ(std::memcmp(&floats[h], &want, 4), 0) << h;
    }
  }
  std::mt19937 rng(5);
  std::vector<float> in;
  for (uint32_t exp = 0; exp < 256; ++exp) {
    for (int k = 0; k < 2000; ++k) {
      uint32_t mant = rng() & 0x7fffffu;
      if (k % 4 == 0) mant = (mant & ~0x1fffu) | 0x1000u;  // a tie at the half's precision
      const uint32_t bits = (rng() & 0x80000000u) | (exp << 23) | mant;
      float f;
      std::memcpy(&f, &bits, 4);
      in.push_back(f);
    }
  }
  std::vector<uint16_t> out(in.size());
  floats_to_halves(in.data(), out.data(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const uint16_t want = float_to_half(in[i]);
    if (std::isnan(in[i])) {
      EXPECT_TRUE(std::isnan(half_to_float(out[i]))) << i;
    } else {
      ASSERT_EQ(out[i], want) << "float bits " << std::hex << std::bit_cast<uint32_t>(in[i]);
    }
  }
}

TEST(Half, RoundTripsExactValuesAndRoundsToNearestEven) {
  for (float f : {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.960464477539063e-08f}) {
    EXPECT_EQ(half_to_float(float_to_half(f)), f);
  }
  // Every half bit pattern that is not NaN converts back to itself.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = half_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(float_to_half(f), h);
  }
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1).
  EXPECT_EQ(half_to_float(float_to_half(1.0f + std::ldexp(1.0f, -11))), 1.0f);
  EXPECT_EQ(half_to_float(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11))),
            1.0f + std::ldexp(1.0f, -9));
  EXPECT_TRUE(std::isinf(half_to_float(float_to_half(70000.0f))));
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(std::nanf("")))));
  // Relative error of a normal value is at most 2^-11.
  for (float f : randn(1000, 7, 10.0f)) {
    EXPECT_LE(std::fabs(half_to_float(float_to_half(f)) - f), std::fabs(f) * 4.9e-4f);
  }
}

TEST(Attention, OnlineSoftmaxInBlocksEqualsOneShot) {
  const int rows = 23, dim = 8;
  auto q = randn(dim, 8), k = randn(rows * dim, 9), v = randn(rows * dim, 10);
  std::vector<float> scratch(rows), direct(dim), blocks(dim);
  attend_query(q.data(), k.data(), dim, v.data(), dim, rows, dim, 0.5f, 0.0f, direct.data(),
               scratch.data());
  // Naive reference.
  std::vector<double> s(rows), ref(dim, 0.0);
  double mx = -1e300, sum = 0;
  for (int j = 0; j < rows; ++j) {
    s[j] = 0;
    for (int i = 0; i < dim; ++i) s[j] += double(q[i]) * k[j * dim + i];
    s[j] *= 0.5;
    mx = std::max(mx, s[j]);
  }
  for (int j = 0; j < rows; ++j) sum += std::exp(s[j] - mx);
  for (int j = 0; j < rows; ++j)
    for (int i = 0; i < dim; ++i) ref[i] += std::exp(s[j] - mx) / sum * v[j * dim + i];
  OnlineSoftmax acc(dim);
  for (int b = 0; b < rows; b += 5) {
    const int n = std::min(5, rows - b);
    attn_scores(q.data(), &k[b * dim], dim, n, dim, 0.5f, 0.0f, scratch.data());
    acc.add(scratch.data(), &v[b * dim], dim, n);
  }
  acc.finish(blocks.data());
  for (int i = 0; i < dim; ++i) {
    EXPECT_NEAR(direct[i], ref[i], 1e-5);
    EXPECT_NEAR(blocks[i], ref[i], 1e-5);
  }
}

TEST(Activations, SiluAndGeluTanhAndSoftcap) {
  const float g[3] = {-2.0f, 0.3f, 4.0f}, u[3] = {1.5f, -1.0f, 0.5f};
  float o[3];
  silu_mul(g, u, o, 3);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(o[i], g[i] / (1 + std::exp(-g[i])) * u[i], 1e-6);
  gelu_tanh_mul(g, u, o, 3);
  for (int i = 0; i < 3; ++i) {
    const double x = g[i];
    const double ref =
        0.5 * x * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (x + 0.044715 * x * x * x)));
    EXPECT_NEAR(o[i], ref * u[i], 1e-6);
  }
  float s[2] = {100.0f, -1.0f};
  softcap(s, 2, 30.0f);
  EXPECT_NEAR(s[0], 30 * std::tanh(100.0 / 30), 1e-5);
  EXPECT_NEAR(s[1], 30 * std::tanh(-1.0 / 30), 1e-6);
}

TEST(Parallel, CoversTheRangeOnceAndRethrows) {
  std::vector<int> hits(1000, 0);
  parallel_for(1000, 4, 10, [&](int b, int e) {
    for (int i = b; i < e; ++i) hits[i]++;
  });
  for (int h : hits) EXPECT_EQ(h, 1);
  EXPECT_THROW(parallel_for(100, 2, 1,
                            [](int b, int) {
                              if (b > 0) throw std::runtime_error("x");
                            }),
               std::runtime_error);
}

}  // namespace
}  // namespace xq
