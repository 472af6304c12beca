// XQuant's fused decode attention (kernels/cuda/decode_ops.h xquant_decode_splits +
// attention_combine) against double-precision math written here from the definition: rows
// packed by the CPU quantizer into shuffled pages, K rebuilt from the dequantized (bf16) input
// and bf16 weights, bias, k-norm, RoPE, softmax with the new row's own key, the weighted mean of
// the value inputs. X-shaped and latent-shaped rows, 2/3/4/16 bits, GQA and MHA groups, window
// and softcap, sequences from an empty past to past a thousand positions, 1 to 9 splits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/cache/quantizer.h"
#include "kernels/cpu/half.h"
#include "kernels/cuda/decode_ops.h"
#include "tests/unit/cuda_test_support.h"
#include "tests/unit/test_random.h"

namespace xq::cuda {
namespace {

using test::DeviceBuf;
using test::GpuTest;

uint16_t to_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float bf16_bits_to_float(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
float round_bf16(float f) { return bf16_bits_to_float(to_bf16_bits(f)); }

struct Case {
  std::string name;
  int heads, kv_heads, head_dim;
  int row_width, k_col, k_width, v_col, v_width;
  int bits, group;
  int window = 0;
  float softcap = 0.0f;
  bool bias = false, norm = false;
};

const std::vector<int> kPasts = {0, 1, 63, 64, 200, 1000, 129};

struct Inputs {
  std::vector<AttnSeq> seqs;
  std::vector<int> tables;
  std::vector<uint8_t> store;            // pages of packed rows
  std::vector<std::vector<float>> rows;  // per sequence: dequantized rows [past][row_width]
  std::vector<float> q, k_new, wk_f, bk, norm_w;
  std::vector<uint16_t> wk, v_new;  // bf16
  std::vector<double> inv_freq;
  size_t page_bytes = 0;
};

Inputs make_inputs(const Case& c, unsigned seed) {
  Inputs in;
  std::mt19937 rng(seed);
  const QuantRowLayout L{c.row_width, c.bits, c.group};
  in.page_bytes = kPageRows * L.bytes() + 4;  // a gap between pages, as in the pool's layers
  int pages = 3;
  for (int past : kPasts) pages += (past + kPageRows - 1) / kPageRows;
  std::vector<int> order(pages);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  in.store.assign(pages * in.page_bytes, 0xff);
  size_t next = 0;
  int seed_i = static_cast<int>(seed) * 100;
  for (size_t i = 0; i < kPasts.size(); ++i) {
    const int past = kPasts[i];
    AttnSeq s;
    s.q_row = static_cast<int>(i);
    s.n = 1;
    s.start_pos = past;
    s.table = static_cast<int>(in.tables.size());
    for (int p = 0; p < (past + kPageRows - 1) / kPageRows; ++p) in.tables.push_back(order[next++]);
    std::vector<float> deq(static_cast<size_t>(past) * c.row_width);
    const std::vector<float> x = xq::test::randn(deq.size(), ++seed_i);
    for (int t = 0; t < past; ++t) {
      uint8_t* row = in.store.data() + in.tables[s.table + t / kPageRows] * in.page_bytes +
                     (t % kPageRows) * L.bytes();
      const float* xr = x.data() + static_cast<size_t>(t) * c.row_width;
      float* dr = deq.data() + static_cast<size_t>(t) * c.row_width;
      if (c.bits == 16) {
        for (int j = 0; j < c.row_width; ++j) {
          const uint16_t h = float_to_half(xr[j]);
          std::memcpy(row + 2 * j, &h, 2);
          dr[j] = half_to_float(h);
        }
        continue;
      }
      std::vector<uint32_t> words(L.words());
      std::vector<uint16_t> scales(L.groups()), zeros(L.groups());
      quantize(xr, c.row_width, c.bits, c.group, words.data(), scales.data(), zeros.data());
      dequantize(words.data(), scales.data(), zeros.data(), c.row_width, c.bits, c.group, dr);
      std::memcpy(row, words.data(), 4 * words.size());
      std::memcpy(row + 4 * words.size(), scales.data(), 2 * scales.size());
      std::memcpy(row + 4 * words.size() + 2 * scales.size(), zeros.data(), 2 * zeros.size());
    }
    in.rows.push_back(std::move(deq));
    in.seqs.push_back(s);
  }
  const int rows = static_cast<int>(kPasts.size()), D = c.head_dim, KV = c.kv_heads * D;
  in.q = xq::test::randn(static_cast<size_t>(rows) * c.heads * D, seed + 1,
                         c.softcap > 0 ? 2.0f : 1.0f);
  in.k_new = xq::test::randn(static_cast<size_t>(rows) * KV, seed + 2);
  in.wk_f = xq::test::randn(static_cast<size_t>(KV) * c.k_width, seed + 3,
                            1.0f / std::sqrt(static_cast<float>(c.k_width)));
  for (float& w : in.wk_f) {
    in.wk.push_back(to_bf16_bits(w));
    w = bf16_bits_to_float(in.wk.back());
  }
  const std::vector<float> vn = xq::test::randn(static_cast<size_t>(rows) * c.v_width, seed + 4);
  for (float v : vn) in.v_new.push_back(to_bf16_bits(v));
  if (c.bias) in.bk = xq::test::randn(KV, seed + 5, 0.5f);
  if (c.norm) in.norm_w = xq::test::randn(D, seed + 6, 0.3f);
  for (int e = 0; e < D / 2; ++e) in.inv_freq.push_back(std::pow(10000.0, -2.0 * e / D));
  return in;
}

// y[h][r][c] in double: the softmax-weighted mean of the value inputs for query head h of row r.
std::vector<double> reference(const Case& c, const Inputs& in, const AttnParams& p) {
  const int rows = static_cast<int>(kPasts.size()), D = c.head_dim, G = c.heads / c.kv_heads;
  const int KV = c.kv_heads * D;
  std::vector<double> y(static_cast<size_t>(c.heads) * rows * c.v_width, 0.0);
  for (int r = 0; r < rows; ++r) {
    const int past = kPasts[r], first = p.window > 0 ? std::max(0, past - p.window + 1) : 0;
    for (int kvh = 0; kvh < c.kv_heads; ++kvh) {
      // Keys of the visible past, then the new row's.
      std::vector<std::vector<double>> keys;
      for (int t = first; t < past; ++t) {
        const float* xr = in.rows[r].data() + static_cast<size_t>(t) * c.row_width + c.k_col;
        std::vector<double> k(D);
        for (int n = 0; n < D; ++n) {
          double a = 0.0;
          const float* w = in.wk_f.data() + static_cast<size_t>(kvh * D + n) * c.k_width;
          for (int j = 0; j < c.k_width; ++j) a += static_cast<double>(round_bf16(xr[j])) * w[j];
          k[n] = a + (c.bias ? in.bk[kvh * D + n] : 0.0);
        }
        if (c.norm) {
          double ss = 0.0;
          for (double v : k) ss += v * v;
          const double inv = 1.0 / std::sqrt(ss / D + 1e-6);
          for (int n = 0; n < D; ++n) k[n] *= inv * (1.0 + in.norm_w[n]);
        }
        for (int e = 0; e < D / 2; ++e) {
          const double a = t * in.inv_freq[e], lo = k[e], hi = k[e + D / 2];
          k[e] = lo * std::cos(a) - hi * std::sin(a);
          k[e + D / 2] = hi * std::cos(a) + lo * std::sin(a);
        }
        keys.push_back(std::move(k));
      }
      keys.emplace_back(in.k_new.begin() + (static_cast<size_t>(r) * KV + kvh * D),
                        in.k_new.begin() + (static_cast<size_t>(r) * KV + kvh * D + D));
      for (int g = 0; g < G; ++g) {
        const int h = kvh * G + g;
        const float* q = in.q.data() + (static_cast<size_t>(r) * c.heads + h) * D;
        std::vector<double> w;
        double mx = -INFINITY;
        for (const auto& k : keys) {
          double dot = 0.0;
          for (int n = 0; n < D; ++n) dot += q[n] * k[n];
          double s = dot * p.scale;
          if (p.softcap > 0) s = p.softcap * std::tanh(s / p.softcap);
          w.push_back(s);
          mx = std::max(mx, s);
        }
        double sum = 0.0;
        for (double& v : w) sum += (v = std::exp(v - mx));
        double* out = y.data() + (static_cast<size_t>(h) * rows + r) * c.v_width;
        for (int t = first; t < past; ++t) {
          const float* vr = in.rows[r].data() + static_cast<size_t>(t) * c.row_width + c.v_col;
          for (int j = 0; j < c.v_width; ++j) out[j] += w[t - first] / sum * vr[j];
        }
        for (int j = 0; j < c.v_width; ++j)
          out[j] += w.back() / sum * bf16_bits_to_float(in.v_new[r * c.v_width + j]);
      }
    }
  }
  return y;
}

using CudaXQuantDecode = GpuTest;

TEST_F(CudaXQuantDecode, MatchesDoublePrecisionReference) {
  const std::vector<Case> cases = {
      // name, heads, kv, D, row width, k col/width, v col/width, bits, group, window, cap, bias,
      // norm
      {"latent 4-bit GQA", 8, 2, 64, 256, 0, 128, 128, 128, 4, 32},
      {"X 3-bit GQA, bias", 8, 2, 128, 384, 0, 384, 0, 384, 3, 32, 0, 0.0f, true},
      {"X 2-bit MHA G128", 4, 4, 64, 256, 0, 256, 0, 256, 2, 128},
      {"latent fp16, k-norm, window, softcap", 4, 1, 256, 512, 0, 256, 256, 256, 16, 32, 150, 30.0f,
       false, true},
      {"latent 4-bit, group of 7", 14, 2, 64, 256, 0, 128, 128, 128, 4, 32, 0, 0.0f, true},
  };
  unsigned seed = 900;
  for (const Case& c : cases) {
    seed += 10;
    SCOPED_TRACE(c.name + ", seed " + std::to_string(seed));
    const Inputs in = make_inputs(c, seed);
    AttnParams p;
    p.num_heads = c.heads;
    p.num_kv_heads = c.kv_heads;
    p.head_dim = c.head_dim;
    p.window = c.window;
    p.softcap = c.softcap;
    p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    const auto ref = reference(c, in, p);
    const int rows = static_cast<int>(kPasts.size());

    DeviceBuf<uint8_t> d_store(in.store);
    DeviceBuf<AttnSeq> d_seqs(in.seqs);
    DeviceBuf<int> d_tables(in.tables.empty() ? std::vector<int>{0} : in.tables);
    DeviceBuf<float> d_q(in.q), d_kn(in.k_new), d_bk(in.bk.empty() ? std::vector<float>{0} : in.bk);
    DeviceBuf<float> d_norm(in.norm_w.empty() ? std::vector<float>{0} : in.norm_w);
    DeviceBuf<uint16_t> d_wk(in.wk), d_vn(in.v_new);
    DeviceBuf<double> d_freq(in.inv_freq);
    XDecodeParams x;
    x.base = d_store.get();
    x.page_bytes = in.page_bytes;
    x.layout = QuantRowLayout{c.row_width, c.bits, c.group};
    x.k_col = c.k_col;
    x.k_width = c.k_width;
    x.v_col = c.v_col;
    x.v_width = c.v_width;
    x.wk = reinterpret_cast<const bf16*>(d_wk.get());
    x.bk = c.bias ? d_bk.get() : nullptr;
    x.k_norm = c.norm ? d_norm.get() : nullptr;
    x.norm_one_plus = true;
    x.inv_freq = d_freq.get();
    x.k_new = d_kn.get();
    x.v_new = reinterpret_cast<const bf16*>(d_vn.get());
    x.v_new_stride = c.v_width;
    ASSERT_TRUE(xquant_decode_supported(p, x));
    for (int splits : {1, 4, 9}) {
      SCOPED_TRACE("splits " + std::to_string(splits));
      const size_t n = split_partials_floats(rows, c.heads, splits, c.v_width);
      DeviceBuf<float> d_acc(std::vector<float>(n, NAN)), d_ml(std::vector<float>(2 * n, NAN));
      DeviceBuf<uint16_t> d_y(std::vector<uint16_t>(ref.size(), 0x7fc0));  // bf16 NaN
      const SplitPartials parts{d_ml.get(), d_acc.get(), splits};
      xquant_decode_splits(d_q.get(), rows, d_seqs.get(), d_tables.get(), x, p, parts, stream_);
      attention_combine(parts, rows, c.heads, c.v_width, nullptr,
                        reinterpret_cast<bf16*>(d_y.get()), stream_);
      const auto got = d_y.download();
      for (int h = 0; h < c.heads; ++h) {
        for (int r = 0; r < rows; ++r) {
          double num = 0.0, den = 0.0;
          const size_t at = (static_cast<size_t>(h) * rows + r) * c.v_width;
          for (int j = 0; j < c.v_width; ++j) {
            const float g = bf16_bits_to_float(got[at + j]);
            ASSERT_FALSE(std::isnan(g)) << "head " << h << " row " << r << " column " << j;
            num += (g - ref[at + j]) * (g - ref[at + j]);
            den += ref[at + j] * ref[at + j];
          }
          EXPECT_LT(std::sqrt(num / den), 8e-3)
              << "head " << h << " row " << r << " (past " << kPasts[r] << ")";
        }
      }
    }
  }
}

TEST(CudaXQuantDecodeArgs, RefusesShapesItCannotServe) {
  AttnParams p;
  p.num_heads = 8;
  p.num_kv_heads = 2;
  p.head_dim = 96;  // not a tile width
  XDecodeParams x;
  x.layout = QuantRowLayout{256, 4, 32};
  x.k_width = 128;
  x.v_width = 128;
  EXPECT_FALSE(xquant_decode_supported(p, x));
  p.head_dim = 64;
  EXPECT_TRUE(xquant_decode_supported(p, x));
  x.layout.bits = 5;
  EXPECT_FALSE(xquant_decode_supported(p, x));
  x.layout.bits = 4;
  p.num_heads = 64;  // a group of 32 query heads
  EXPECT_FALSE(xquant_decode_supported(p, x));
  EXPECT_THROW(xquant_decode_splits(nullptr, 1, nullptr, nullptr, x, p, SplitPartials{}, nullptr),
               CudaError);
}

}  // namespace
}  // namespace xq::cuda
