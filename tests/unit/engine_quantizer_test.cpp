// The group quantizer and the quantized row stores: error bounds, packing, edge values, bytes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "engine/cache/quantized_rows.h"
#include "engine/cache/quantizer.h"
#include "kernels/cpu/half.h"

namespace xq {
namespace {

struct Quantized {
  std::vector<uint32_t> words;
  std::vector<uint16_t> scales, zeros;
  std::vector<float> back;
};

Quantized round_trip(const std::vector<float>& x, int bits, int group) {
  Quantized q;
  q.words.resize(packed_words(x.size(), bits));
  q.scales.resize(num_groups(x.size(), group));
  q.zeros.resize(q.scales.size());
  quantize(x.data(), x.size(), bits, group, q.words.data(), q.scales.data(), q.zeros.data());
  q.back.resize(x.size());
  dequantize(q.words.data(), q.scales.data(), q.zeros.data(), x.size(), bits, group, q.back.data());
  return q;
}

// Every finite value lies within scale/2 of its reconstruction (plus float rounding).
void expect_within_half_step(const std::vector<float>& x, const Quantized& q, int group) {
  for (size_t i = 0; i < x.size(); ++i) {
    const float s = half_to_float(q.scales[i / group]);
    const float tol = 0.5f * s * (1 + 1e-5f) + 1e-6f * std::abs(x[i]) + 1e-30f;
    ASSERT_LE(std::abs(q.back[i] - x[i]), tol) << "value " << i << " = " << x[i];
  }
}

TEST(Quantizer, RoundTripWithinHalfStepForEveryWidth) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.3f, 2.0f);
  for (int bits : {2, 3, 4, 8}) {
    for (int group : {1, 7, 32, 128}) {
      std::vector<float> x(1000);
      for (auto& v : x) v = nd(rng);
      const Quantized q = round_trip(x, bits, group);
      expect_within_half_step(x, q, group);
    }
  }
}

TEST(Quantizer, ErrorShrinksAsBitsGrow) {
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> ud(-3.0f, 5.0f);
  std::vector<float> x(4096);
  for (auto& v : x) v = ud(rng);
  double prev = 1e30;
  for (int bits : {2, 3, 4, 8}) {
    const Quantized q = round_trip(x, bits, 32);
    double err = 0;
    for (size_t i = 0; i < x.size(); ++i) err += std::pow(q.back[i] - x[i], 2);
    EXPECT_LT(err, prev / 3) << bits << " bits";
    prev = err;
  }
}

TEST(Quantizer, PacksCodesAcrossWordBoundaries) {
  for (int bits : {2, 3, 4, 8}) {
    std::mt19937 rng(bits);
    const size_t n = 97;  // 97*3 = 291 bits: codes straddle words and the last word is partial
    std::vector<uint8_t> codes(n), back(n);
    for (auto& c : codes) c = rng() & ((1u << bits) - 1);
    std::vector<uint32_t> words(packed_words(n, bits), 0xdeadbeefu);
    pack_codes(codes.data(), n, bits, words.data());
    unpack_codes(words.data(), n, bits, back.data());
    EXPECT_EQ(codes, back) << bits << " bits";
  }
  // 3-bit code 10 (i = 10) starts at bit 30: two bits in word 0, one in word 1.
  std::vector<uint8_t> codes(11, 0);
  codes[10] = 0b111;
  std::vector<uint32_t> words(packed_words(11, 3));
  pack_codes(codes.data(), 11, 3, words.data());
  EXPECT_EQ(words[0], 0xC0000000u);
  EXPECT_EQ(words[1], 0x1u);
}

TEST(Quantizer, ExactByteCounts) {
  EXPECT_EQ(packed_words(4096, 3), 384u);
  EXPECT_EQ(packed_words(11, 3), 2u);
  EXPECT_EQ(quantized_bytes(4096, 2, 128), 4096 * 2 / 8 + 32 * 4u);
  EXPECT_EQ(quantized_bytes(100, 3, 32), 4 * 10 + 4 * 4u);  // 300 bits -> 10 words, 4 groups
  EXPECT_EQ(quantized_bytes(64, 8, 64), 64 + 4u);
}

TEST(Quantizer, ConstantGroupsAreExact) {
  for (float c : {0.0f, 1.0f, -2.5f, 0.1f, 1e-3f, 3000.7f}) {
    std::vector<float> x(64, c);
    const Quantized q = round_trip(x, 2, 32);
    expect_within_half_step(x, q, 32);
    // A value fp16 holds exactly comes back exactly (its scale is 0).
    if (half_to_float(float_to_half(c)) == c) {
      for (float v : q.back) EXPECT_EQ(v, c);
    }
  }
}

TEST(Quantizer, OutliersOnlyWidenTheirOwnGroup) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  std::vector<float> x(256);
  for (auto& v : x) v = nd(rng);
  x[5] = 800.0f;
  x[40] = -1200.0f;
  const Quantized q = round_trip(x, 4, 32);
  expect_within_half_step(x, q, 32);
  // Groups without outliers keep a fine step.
  for (size_t g = 2; g < 8; ++g) EXPECT_LT(half_to_float(q.scales[g]), 0.1f);
  // The outliers themselves come back (they set their group's range).
  EXPECT_NEAR(q.back[5], 800.0f, half_to_float(q.scales[0]));
  EXPECT_NEAR(q.back[40], -1200.0f, half_to_float(q.scales[1]));
}

TEST(Quantizer, NonFiniteValuesDoNotCorruptNeighbours) {
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> ud(-1.0f, 1.0f);
  std::vector<float> x(96);
  for (auto& v : x) v = ud(rng);
  std::vector<float> clean = x;
  const float inf = std::numeric_limits<float>::infinity();
  x[3] = std::nanf("");
  x[10] = inf;
  x[20] = -inf;
  for (int i = 64; i < 96; ++i) x[i] = std::nanf("");  // a group of nothing but NaN
  const Quantized q = round_trip(x, 3, 32);
  const Quantized ref = round_trip(clean, 3, 32);
  for (float v : q.back) EXPECT_TRUE(std::isfinite(v));
  // Group 1 has no bad values: bit-identical to the clean run. Group 0's finite values keep
  // the bound of a range taken over finite values only.
  for (int i = 32; i < 64; ++i) EXPECT_EQ(q.back[i], ref.back[i]);
  for (int i = 0; i < 32; ++i) {
    if (!std::isfinite(x[i])) continue;
    EXPECT_LE(std::abs(q.back[i] - x[i]), 0.5f * half_to_float(q.scales[0]) * 1.0001f);
  }
  // Saturation: +inf to the group max, -inf to its min, NaN near 0.
  float lo = 1e9f, hi = -1e9f;
  for (int i = 0; i < 32; ++i) {
    if (std::isfinite(x[i])) lo = std::min(lo, q.back[i]), hi = std::max(hi, q.back[i]);
  }
  EXPECT_GE(q.back[10], hi);
  EXPECT_LE(q.back[20], lo);
  EXPECT_LE(std::abs(q.back[3]), half_to_float(q.scales[0]));
  for (int i = 64; i < 96; ++i) EXPECT_EQ(q.back[i], 0.0f);
}

TEST(Quantizer, HugeValuesSaturateToHalfRange) {
  std::vector<float> x = {1e6f, -1e6f, 0.0f, 1.0f};
  const Quantized q = round_trip(x, 8, 4);
  EXPECT_NEAR(q.back[0], 65504.0f, half_to_float(q.scales[0]));
  EXPECT_NEAR(q.back[1], -65504.0f, half_to_float(q.scales[0]));
}

TEST(Quantizer, RejectsUnsupportedWidths) {
  float x = 0;
  uint32_t w;
  uint16_t s, z;
  EXPECT_THROW(quantize(&x, 1, 5, 32, &w, &s, &z), std::invalid_argument);
  EXPECT_THROW(quantize(&x, 1, 4, 0, &w, &s, &z), std::invalid_argument);
}

std::vector<float> random_rows(int rows, int width, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(rows) * width);
  for (auto& v : x) v = nd(rng);
  return x;
}

TEST(TokenQuantRows, WindowKeepsRecentRowsInHalfPrecision) {
  const int width = 40, window = 8;
  TokenQuantRows store(width, 2, 16, window);
  const auto x = random_rows(30, width, 5);
  store.append(x.data(), 13);
  store.append(x.data() + 13 * width, 17);
  ASSERT_EQ(store.rows(), 30);
  std::vector<float> back(30 * width);
  store.read(0, 30, back.data());
  for (int r = 22; r < 30; ++r)
    for (int c = 0; c < width; ++c)
      EXPECT_NEAR(back[r * width + c], x[r * width + c], 2e-3f * std::abs(x[r * width + c]));
  double err = 0;
  for (int i = 0; i < 22 * width; ++i) err = std::max<double>(err, std::abs(back[i] - x[i]));
  EXPECT_GT(err, 0.05);  // the older rows are 2-bit
  EXPECT_EQ(store.bytes(), 22 * store.row_bytes() + 8 * store.window_row_bytes());
  EXPECT_EQ(store.row_bytes(), quantized_bytes(width, 2, 16));
}

TEST(TokenQuantRows, TruncateMatchesAppendingFewerRows) {
  const int width = 24;
  const auto x = random_rows(40, width, 6);
  for (int window : {0, 5}) {
    TokenQuantRows a(width, 3, 8, window);
    a.append(x.data(), 40);
    a.truncate(17);
    TokenQuantRows b(width, 3, 8, window);
    b.append(x.data(), 17);
    ASSERT_EQ(a.rows(), 17);
    EXPECT_EQ(a.bytes(), b.bytes());
    std::vector<float> ra(17 * width), rb(17 * width);
    a.read(0, 17, ra.data());
    b.read(0, 17, rb.data());
    // Rows that were quantized and moved back to the window keep their dequantized values.
    for (int i = 0; i < 17 * width; ++i) EXPECT_NEAR(ra[i], rb[i], 0.5f) << window;
    if (window == 0) {
      EXPECT_EQ(ra, rb);
    }
  }
}

// A sliding-window layer's store forgets its oldest rows; the rest keep their indices and values.
TEST(TokenQuantRows, DropBeforeForgetsOldRowsOnly) {
  const int width = 24;
  const auto x = random_rows(50, width, 9);
  for (int bits : {3, 16}) {
    TokenQuantRows store(width, bits, 8, bits == 16 ? 0 : 6);
    store.append(x.data(), 50);
    std::vector<float> before(50 * width), after(20 * width);
    store.read(0, 50, before.data());
    const size_t bytes = store.bytes();
    store.drop_before(30);
    EXPECT_EQ(store.first(), 30);
    EXPECT_EQ(store.rows(), 50);
    EXPECT_EQ(store.bytes(), bytes - 30 * store.row_bytes());
    store.read(30, 50, after.data());
    EXPECT_TRUE(std::equal(after.begin(), after.end(), before.begin() + 30 * width)) << bits;
    EXPECT_THROW(store.read(29, 30, after.data()), std::out_of_range);
    store.append(x.data(), 3);  // appending after a drop
    std::vector<float> last(3 * width);
    store.read(50, 53, last.data());
    for (int i = 0; i < 3 * width; ++i) EXPECT_NEAR(last[i], x[i], 0.5f);
    store.drop_before(100);  // never into the fp16 window
    EXPECT_EQ(store.rows(), 53);
    EXPECT_EQ(store.first(), bits == 16 ? 53 : 47);
    store.truncate(0);
    EXPECT_EQ(store.rows(), 0);
    EXPECT_EQ(store.bytes(), 0u);
  }
}

TEST(ChannelQuantRows, DropBeforeForgetsWholeBlocks) {
  const int width = 6, group = 4;
  const auto x = random_rows(14, width, 10);
  for (int bits : {2, 16}) {
    ChannelQuantRows store(width, bits, group);
    store.append(x.data(), 14);
    std::vector<float> before(14 * width), after(7 * width);
    store.read(0, 14, before.data());
    store.drop_before(7);  // block 0 lies wholly before row 7, block 1 does not
    EXPECT_EQ(store.first(), bits == 16 ? 7 : 4);
    EXPECT_EQ(store.rows(), 14);
    store.read(7, 14, after.data());
    EXPECT_TRUE(std::equal(after.begin(), after.end(), before.begin() + 7 * width)) << bits;
    if (bits != 16) {
      EXPECT_EQ(store.bytes(), 2 * store.block_bytes() + 2 * store.tail_row_bytes());
    } else {
      EXPECT_EQ(store.bytes(), 7 * store.tail_row_bytes());
    }
    EXPECT_THROW(store.read(3, 4, after.data()), std::out_of_range);
    store.append(x.data(), 2);  // fills block 3
    EXPECT_EQ(store.rows(), 16);
    store.truncate(0);
    EXPECT_EQ(store.rows(), 0);
    EXPECT_EQ(store.bytes(), 0u);
  }
}

TEST(ChannelQuantRows, BlocksQuantizePerChannelAndTailStaysHalf) {
  const int width = 10, group = 8;
  ChannelQuantRows store(width, 4, group);
  auto x = random_rows(21, width, 7);
  for (int t = 0; t < 21; ++t) x[t * width + 3] *= 100;  // an outlier channel
  for (int t = 0; t < 21; ++t) store.append(x.data() + t * width, 1);
  ASSERT_EQ(store.rows(), 21);
  EXPECT_EQ(store.bytes(), 2 * store.block_bytes() + 5 * store.tail_row_bytes());
  EXPECT_EQ(store.block_bytes(), quantized_bytes(group * width, 4, group));
  std::vector<float> back(21 * width);
  store.read(0, 21, back.data());
  for (int t = 0; t < 16; ++t) {
    for (int c = 0; c < width; ++c) {
      // Per-channel groups: the outlier channel does not coarsen the others.
      const float tol = c == 3 ? 30.0f : 0.5f;
      EXPECT_NEAR(back[t * width + c], x[t * width + c], tol);
    }
  }
  for (int i = 16 * width; i < 21 * width; ++i) EXPECT_NEAR(back[i], x[i], 1e-3f * std::abs(x[i]));
  std::vector<float> part(3 * width);
  store.read(6, 9, part.data());  // across a block boundary
  for (int i = 0; i < 3 * width; ++i) EXPECT_EQ(part[i], back[6 * width + i]);
}

TEST(ChannelQuantRows, TruncateInsideABlockRestoresTheTail) {
  const int width = 6, group = 4;
  const auto x = random_rows(14, width, 8);
  ChannelQuantRows store(width, 2, group);
  store.append(x.data(), 14);
  store.truncate(10);
  EXPECT_EQ(store.rows(), 10);
  EXPECT_EQ(store.bytes(), 2 * store.block_bytes() + 2 * store.tail_row_bytes());
  store.truncate(6);
  EXPECT_EQ(store.bytes(), 1 * store.block_bytes() + 2 * store.tail_row_bytes());
  store.append(x.data() + 6 * width, 2);  // fills block 1 again
  EXPECT_EQ(store.rows(), 8);
  EXPECT_EQ(store.bytes(), 2 * store.block_bytes());
}

}  // namespace
}  // namespace xq
