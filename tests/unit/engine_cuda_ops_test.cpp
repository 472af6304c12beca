// The CUDA dense, paged-row and quantization kernels (kernels/cuda/cuda_ops.h) against their CPU
// references: kernels/cpu ops and rope, and engine/cache/quantizer (byte for byte). Every test
// skips on a machine without a CUDA GPU. Named engine_* because the quantizer lives in xq_engine.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/cache/quantizer.h"
#include "kernels/cpu/half.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/skinny_matmul.h"
#include "tests/unit/cuda_test_support.h"
#include "tests/unit/test_random.h"

namespace xq::cuda {
namespace {

using test::bf16_bits;
using test::bf16_round;
using test::bf16_to_floats;
using test::DeviceBuf;
using test::GpuTest;
using test::rel_err;

using xq::test::randn;

std::vector<bf16> to_bf16_host(const std::vector<float>& v) {
  std::vector<bf16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __float2bfloat16_rn(v[i]);
  return out;
}

TEST(CudaCheck, ThrowsCudaErrorNamingTheCall) {
  EXPECT_NO_THROW(check(cudaSuccess, "fine"));
  try {
    check(cudaErrorInvalidValue, "my_kernel");
    FAIL() << "no throw";
  } catch (const CudaError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("my_kernel: ", 0), 0u) << e.what();
  }
  EXPECT_THROW(check(CUBLAS_STATUS_INVALID_VALUE, "gemm"), CudaError);
}

using CudaDenseOps = GpuTest;

TEST_F(CudaDenseOps, EmbedScalesTableRows) {
  const int vocab = 50, hidden = 37, rows = 9;
  const auto table = to_bf16_host(randn(vocab * hidden, 1));
  std::vector<int> tokens = {3, 0, 49, 3, 17, 8, 22, 49, 1};
  DeviceBuf<bf16> d_table(table);
  DeviceBuf<int> d_tokens(tokens);
  DeviceBuf<float> d_h(rows * hidden);
  embed(d_table.get(), d_tokens.get(), rows, hidden, 6.0827625f, d_h.get(), stream_);
  const auto h = d_h.download();
  for (int r = 0; r < rows; ++r) {
    for (int j = 0; j < hidden; ++j) {
      ASSERT_EQ(h[r * hidden + j], __bfloat162float(table[tokens[r] * hidden + j]) * 6.0827625f);
    }
  }
}

TEST_F(CudaDenseOps, RmsnormMatchesCpu) {
  unsigned seed = 10;
  for (int dim : {1, 64, 100, 4096, 16384}) {
    for (int rows : {1, 3, 7, 130}) {  // 130: the narrower blocks of many rows
      for (bool one_plus : {false, true}) {
        for (bool in_place : {false, true}) {
          SCOPED_TRACE(::testing::Message() << "dim " << dim << " rows " << rows << " one_plus "
                                            << one_plus << " in_place " << in_place);
          auto x = randn(static_cast<size_t>(rows) * dim, ++seed, 3.0f);
          x[0] = 2000.0f;  // an outlier, as hidden states carry
          const auto w = randn(dim, ++seed, 0.5f);
          std::vector<float> ref(x.size());
          xq::rmsnorm(x.data(), w.data(), ref.data(), rows, dim, 1e-6f, one_plus);
          DeviceBuf<float> d_x(x), d_w(w), d_y(x.size());
          DeviceBuf<bf16> d_yb(x.size());
          float* y = in_place ? d_x.get() : d_y.get();
          rmsnorm(d_x.get(), d_w.get(), rows, dim, 1e-6f, one_plus, y, d_yb.get(), stream_);
          const auto got = in_place ? d_x.download() : d_y.download();
          EXPECT_LT(rel_err(got, ref), 1e-5);
          const auto yb = d_yb.download();
          for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_EQ(bf16_bits(yb[i]), bf16_bits(__float2bfloat16_rn(got[i]))) << i;
          }
        }
      }
    }
  }
}

// The residual add fused into the norm: x holds x + res afterwards, y its norm, as the two steps.
TEST_F(CudaDenseOps, AddRmsnormEqualsAddThenRmsnorm) {
  unsigned seed = 300;
  for (int dim : {100, 4096, 9000}) {
    for (int rows : {1, 5, 200}) {
      SCOPED_TRACE(::testing::Message() << "dim " << dim << " rows " << rows);
      const auto x = randn(static_cast<size_t>(rows) * dim, ++seed, 3.0f);
      const auto res = randn(x.size(), ++seed, 2.0f), w = randn(dim, ++seed, 0.5f);
      std::vector<float> sum(x.size()), ref(x.size());
      for (size_t i = 0; i < x.size(); ++i) sum[i] = x[i] + res[i];
      xq::rmsnorm(sum.data(), w.data(), ref.data(), rows, dim, 1e-6f, false);
      DeviceBuf<float> d_x(x), d_r(res), d_w(w), d_y(x.size());
      DeviceBuf<bf16> d_yb(x.size());
      add_rmsnorm(d_x.get(), d_r.get(), d_w.get(), rows, dim, 1e-6f, false, d_y.get(), d_yb.get(),
                  stream_);
      EXPECT_EQ(d_x.download(), sum);
      EXPECT_LT(rel_err(d_y.download(), ref), 1e-5);
    }
  }
}

TEST_F(CudaDenseOps, AddAndAddBiasMatchCpu) {
  const int rows = 7, dim = 333;
  const auto y0 = randn(rows * dim, 20), x = randn(rows * dim, 21), bias = randn(dim, 22);
  DeviceBuf<float> d_y(y0), d_x(x), d_b(bias);
  add(d_y.get(), d_x.get(), y0.size(), stream_);
  add_bias(d_y.get(), d_b.get(), rows, dim, stream_);
  const auto got = d_y.download();
  for (int r = 0; r < rows; ++r) {
    for (int j = 0; j < dim; ++j) {
      const size_t i = static_cast<size_t>(r) * dim + j;
      ASSERT_EQ(got[i], (y0[i] + x[i]) + bias[j]) << r << "," << j;
    }
  }
}

TEST_F(CudaDenseOps, RopeMatchesCpuAndSkipsNegativePositions) {
  const int rows = 6, heads = 3;
  const std::vector<int> pos = {0, 1, 17, -1, 4095, 131071};
  for (int head_dim : {2, 64, 128, 256}) {
    SCOPED_TRACE(::testing::Message() << "head_dim " << head_dim);
    const int stride = heads * head_dim + 7;  // padded rows: the stride is not the row size
    RopeFreqParams fp;
    fp.head_dim = head_dim;
    fp.theta = 1e6;
    const auto inv_freq = rope_inv_freq(fp);
    const auto x = randn(static_cast<size_t>(rows) * stride, 30 + head_dim);
    auto ref = x;
    rope_apply(ref.data(), rows, heads, head_dim, stride, pos.data(), inv_freq);
    // The CPU rotates every row; the GPU op leaves rows at negative positions alone.
    std::copy(x.begin() + 3 * stride, x.begin() + 4 * stride, ref.begin() + 3 * stride);
    DeviceBuf<float> d_x(x);
    DeviceBuf<int> d_pos(pos);
    DeviceBuf<double> d_freq(inv_freq);
    rope(d_x.get(), rows, heads, head_dim, stride, d_pos.get(), RopeAngles{d_freq.get()}, stream_);
    const auto got = d_x.download();
    EXPECT_LT(rel_err(got, ref), 1e-5);
    for (int j = 0; j < stride; ++j) ASSERT_EQ(got[3 * stride + j], x[3 * stride + j]);
    for (int r = 0; r < rows; ++r) {  // the padding past the heads is not touched
      for (int j = heads * head_dim; j < stride; ++j)
        ASSERT_EQ(got[r * stride + j], x[r * stride + j]);
    }
    // Out of place into fp16: the same rotation (rows at negative positions converted as they
    // are), the padding of the output untouched, the input unchanged.
    DeviceBuf<float> d_in(x);
    const half poison = __float2half_rn(-777.0f);
    DeviceBuf<half> d_h(std::vector<half>(x.size(), poison));
    rope_to_half(d_in.get(), rows, heads, head_dim, stride, d_pos.get(), RopeAngles{d_freq.get()},
                 d_h.get(), stream_);
    const auto h = d_h.download();
    EXPECT_EQ(d_in.download(), x);
    for (int r = 0; r < rows; ++r) {
      for (int j = 0; j < stride; ++j) {
        const size_t i = static_cast<size_t>(r) * stride + j;
        if (j >= heads * head_dim) {
          ASSERT_EQ(__half2float(h[i]), -777.0f);
          continue;
        }
        const float want = r == 3 ? x[i] : got[i];
        ASSERT_NEAR(__half2float(h[i]), want, 1e-3f * std::max(1.0f, std::abs(want))) << i;
      }
    }
  }
}

// The table of cosines and sines gives exactly what computing the angles gives, inside the table
// and past it (positions it does not hold are computed); bf16 input rows rotate like fp32 ones.
TEST_F(CudaDenseOps, RopeTableEqualsComputedAngles) {
  const int rows = 5, heads = 2, head_dim = 128, stride = heads * head_dim;
  const std::vector<int> pos = {0, 3, 999, 1000, 70000};
  RopeFreqParams fp;
  fp.head_dim = head_dim;
  fp.theta = 5e5;
  DeviceBuf<double> d_freq(rope_inv_freq(fp));
  DeviceBuf<int> d_pos(pos);
  const int positions = 1000;
  DeviceBuf<float2> d_tab(static_cast<size_t>(positions) * head_dim / 2);
  rope_table(d_freq.get(), head_dim, positions, d_tab.get(), stream_);
  const auto x = randn(static_cast<size_t>(rows) * stride, 90, 4.0f);
  std::vector<bf16> xb(x.size());
  std::vector<float> xr(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    xb[i] = __float2bfloat16_rn(x[i]);
    xr[i] = __bfloat162float(xb[i]);
  }
  DeviceBuf<float> d_a(x), d_b(x), d_r(xr);
  DeviceBuf<bf16> d_xb(xb);
  rope(d_a.get(), rows, heads, head_dim, stride, d_pos.get(), RopeAngles{d_freq.get()}, stream_);
  rope(d_b.get(), rows, heads, head_dim, stride, d_pos.get(),
       RopeAngles{d_freq.get(), d_tab.get(), positions}, stream_);
  EXPECT_EQ(d_a.download(), d_b.download());
  DeviceBuf<half> d_hf(x.size()), d_hb(x.size());
  rope_to_half(d_r.get(), rows, heads, head_dim, stride, d_pos.get(), RopeAngles{d_freq.get()},
               d_hf.get(), stream_);
  rope_to_half(d_xb.get(), rows, heads, head_dim, stride, d_pos.get(),
               RopeAngles{d_freq.get(), d_tab.get(), positions}, d_hb.get(), stream_);
  const auto hf = d_hf.download(), hb = d_hb.download();
  for (size_t i = 0; i < x.size(); ++i)
    ASSERT_EQ(__half2float(hf[i]), __half2float(hb[i])) << i;
}

TEST_F(CudaDenseOps, Bf16ToHalfConvertsEveryValue) {
  const auto x = randn(4096, 77, 20.0f);
  std::vector<bf16> xb(x.size());
  for (size_t i = 0; i < x.size(); ++i) xb[i] = __float2bfloat16_rn(x[i]);
  DeviceBuf<bf16> d_x(xb);
  DeviceBuf<half> d_y(x.size());
  bf16_to_half(d_x.get(), x.size(), d_y.get(), stream_);
  const auto y = d_y.download();
  for (size_t i = 0; i < x.size(); ++i) {
    const float b = __bfloat162float(xb[i]);
    ASSERT_EQ(__half2float(y[i]), __half2float(__float2half_rn(b))) << i;
  }
  EXPECT_THROW(bf16_to_half(d_x.get(), 7, d_y.get(), stream_), CudaError);
}

TEST_F(CudaDenseOps, GatedActMatchesCpu) {
  for (size_t n : {size_t{1}, size_t{1000}, size_t{100003}}) {
    for (bool gelu : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "n " << n << " gelu " << gelu);
      const auto gate = randn(n, 40 + n, 3.0f), up = randn(n, 41 + n);
      std::vector<float> ref(n);
      (gelu ? gelu_tanh_mul : silu_mul)(gate.data(), up.data(), ref.data(), n);
      DeviceBuf<float> d_g(gate), d_u(up);
      DeviceBuf<bf16> d_out(n);
      const int w = static_cast<int>(n);
      gated_act(d_g.get(), d_u.get(), 1, w, w, gelu, d_out.get(), stream_);
      // bf16 rounding alone is within 2^-9 of each value.
      EXPECT_LT(rel_err(bf16_to_floats(d_out.download()), ref), 3e-3);
    }
  }
}

// The stacked gate-up product's rows [gate | up] give the same as separate gate and up rows.
TEST_F(CudaDenseOps, GatedActReadsStackedRows) {
  const int rows = 7, width = 333;
  const auto gate = randn(size_t{rows} * width, 60, 3.0f), up = randn(size_t{rows} * width, 61);
  std::vector<float> stacked;
  for (int r = 0; r < rows; ++r) {
    stacked.insert(stacked.end(), gate.begin() + r * width, gate.begin() + (r + 1) * width);
    stacked.insert(stacked.end(), up.begin() + r * width, up.begin() + (r + 1) * width);
  }
  std::vector<float> ref(gate.size());
  silu_mul(gate.data(), up.data(), ref.data(), ref.size());
  DeviceBuf<float> d_s(stacked);
  DeviceBuf<bf16> d_out(ref.size());
  gated_act(d_s.get(), d_s.get() + width, rows, width, 2 * width, false, d_out.get(), stream_);
  EXPECT_LT(rel_err(bf16_to_floats(d_out.download()), ref), 3e-3);
}

TEST_F(CudaDenseOps, SplitQkvSeparatesColumnsAndAddsBiases) {
  const int rows = 5, q = 96, kv = 32, w = q + 2 * kv;
  const auto y = randn(size_t{rows} * w, 70), bq = randn(q, 71), bv = randn(kv, 72);
  DeviceBuf<float> d_y(y), d_bq(bq), d_bv(bv), d_q(size_t{rows} * q), d_k(size_t{rows} * kv),
      d_v(size_t{rows} * kv);
  split_qkv(d_y.get(), rows, q, kv, d_bq.get(), nullptr, d_bv.get(), d_q.get(), d_k.get(),
            d_v.get(), stream_);
  const auto gq = d_q.download(), gk = d_k.download(), gv = d_v.download();
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < q; ++c) ASSERT_EQ(gq[r * q + c], y[r * w + c] + bq[c]) << r << " " << c;
    for (int c = 0; c < kv; ++c) {
      ASSERT_EQ(gk[r * kv + c], y[r * w + q + c]) << r << " " << c;
      ASSERT_EQ(gv[r * kv + c], y[r * w + q + kv + c] + bv[c]) << r << " " << c;
    }
  }
}

TEST_F(CudaDenseOps, SoftcapMatchesCpuAndZeroCapIsANoOp) {
  const size_t n = 4099;
  const auto x = randn(n, 50, 40.0f);
  for (float cap : {30.0f, 0.0f}) {
    auto ref = x;
    xq::softcap(ref.data(), n, cap);
    DeviceBuf<float> d_x(x);
    softcap(d_x.get(), n, cap, stream_);
    const auto got = d_x.download();
    if (cap > 0.0f) {
      EXPECT_LT(rel_err(got, ref), 1e-5);
    } else {
      EXPECT_EQ(got, x);
    }
  }
}

TEST_F(CudaDenseOps, ConversionsRoundToNearestEven) {
  auto x = randn(3001, 60, 100.0f);
  const std::vector<float> special = {0.0f,   -0.0f,    65504.0f, 65520.0f,  -70000.0f,     1e-7f,
                                      -3e-5f, 5.96e-8f, INFINITY, -INFINITY, 1.00048828125f};
  x.insert(x.end(), special.begin(), special.end());
  DeviceBuf<float> d_x(x);
  DeviceBuf<bf16> d_b(x.size());
  DeviceBuf<half> d_h(x.size());
  to_bf16(d_x.get(), x.size(), d_b.get(), stream_);
  to_half(d_x.get(), x.size(), d_h.get(), stream_);
  const auto b = d_b.download();
  const auto h = d_h.download();
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(bf16_bits(b[i]), bf16_bits(__float2bfloat16_rn(x[i]))) << x[i];
    uint16_t hb;
    std::memcpy(&hb, &h[i], 2);
    ASSERT_EQ(hb, float_to_half(x[i])) << x[i];
  }
}

TEST_F(CudaDenseOps, GatherRowsCopiesTheNamedRows) {
  const int src_rows = 10, dim = 129;
  const auto x = randn(src_rows * dim, 70);
  const std::vector<int> rows = {9, 0, 4, 4, 7};
  DeviceBuf<float> d_x(x), d_y(rows.size() * dim);
  DeviceBuf<int> d_rows(rows);
  gather_rows(d_x.get(), d_rows.get(), static_cast<int>(rows.size()), dim, d_y.get(), stream_);
  const auto y = d_y.download();
  for (size_t i = 0; i < rows.size(); ++i) {
    for (int j = 0; j < dim; ++j) ASSERT_EQ(y[i * dim + j], x[rows[i] * dim + j]);
  }
}

TEST_F(CudaDenseOps, MatmulNtMatchesCpuOnBf16Inputs) {
  cublasHandle_t handle;
  check(cublasCreate(&handle), "cublasCreate");
  check(cublasSetStream(handle, stream_), "cublasSetStream");
  // n <= 8 with in % 8 == 0 takes the skinny kernel, the rest cuBLAS.
  for (int n : {1, 2, 5, 8, 9, 33}) {
    for (int in : {64, 100, 1032}) {
      for (int out : {48, 77}) {
        SCOPED_TRACE(::testing::Message() << n << "x" << in << " -> " << out);
        const auto xb = to_bf16_host(randn(n * in, 80 + n)), wb = to_bf16_host(randn(out * in, 81));
        const auto xf = bf16_to_floats(xb), wf = bf16_to_floats(wb);
        std::vector<float> ref(static_cast<size_t>(n) * out);
        xq::matmul_nt(xf.data(), wf.data(), nullptr, ref.data(), n, in, out);
        DeviceBuf<bf16> d_x(xb), d_w(wb);
        DeviceBuf<float> d_y(ref.size());
        matmul_nt(handle, d_x.get(), d_w.get(), d_y.get(), n, in, out);
        EXPECT_LT(rel_err(d_y.download(), ref), 1e-4);
      }
    }
  }
  cublasDestroy(handle);
}

// The fused split + bias + RoPE equals split_qkv then rope() of the q and k heads, including rows
// at negative positions (left unrotated) and positions past the cos/sin table.
TEST_F(CudaDenseOps, QkvRopeEqualsSplitThenRope) {
  const int rows = 5, head_dim = 64, q = 4 * head_dim, kv = 2 * head_dim, w = q + 2 * kv;
  const std::vector<int> pos = {0, 3, -1, 40, 5000};
  RopeFreqParams fp;
  fp.head_dim = head_dim;
  fp.theta = 5e5;
  const auto inv_freq = rope_inv_freq(fp);
  const auto y = randn(size_t{rows} * w, 90), bq = randn(q, 91), bk = randn(kv, 92),
             bv = randn(kv, 93);
  auto rq = std::vector<float>(size_t{rows} * q), rk = std::vector<float>(size_t{rows} * kv),
       rv = rk;
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < q; ++c) rq[r * q + c] = y[r * w + c] + bq[c];
    for (int c = 0; c < kv; ++c) {
      rk[r * kv + c] = y[r * w + q + c] + bk[c];
      rv[r * kv + c] = y[r * w + q + kv + c] + bv[c];
    }
  }
  auto want_q = rq, want_k = rk;
  rope_apply(want_q.data(), rows, q / head_dim, head_dim, q, pos.data(), inv_freq);
  rope_apply(want_k.data(), rows, kv / head_dim, head_dim, kv, pos.data(), inv_freq);
  std::copy(rq.begin() + 2 * q, rq.begin() + 3 * q, want_q.begin() + 2 * q);  // pos -1
  std::copy(rk.begin() + 2 * kv, rk.begin() + 3 * kv, want_k.begin() + 2 * kv);
  DeviceBuf<float> d_y(y), d_bq(bq), d_bk(bk), d_bv(bv), d_q(rq.size()), d_k(rk.size()),
      d_v(rv.size());
  DeviceBuf<int> d_pos(pos);
  DeviceBuf<double> d_freq(inv_freq);
  const int table_positions = 64;  // position 5000 is computed, the others looked up
  DeviceBuf<float2> d_table(static_cast<size_t>(table_positions) * head_dim / 2);
  rope_table(d_freq.get(), head_dim, table_positions, d_table.get(), stream_);
  qkv_rope(d_y.get(), rows, q, kv, head_dim, d_bq.get(), d_bk.get(), d_bv.get(), d_pos.get(),
           RopeAngles{d_freq.get(), d_table.get(), table_positions}, d_q.get(), d_k.get(),
           d_v.get(), stream_);
  EXPECT_LT(rel_err(d_q.download(), want_q), 1e-5);
  EXPECT_LT(rel_err(d_k.download(), want_k), 1e-5);
  EXPECT_EQ(d_v.download(), rv);
  const auto gq = d_q.download();
  for (int c = 0; c < q; ++c) ASSERT_EQ(gq[2 * q + c], rq[2 * q + c]);
}

// The gate-up product with the gated activation fused gives matmul_nt then silu / gelu-tanh.
TEST_F(CudaDenseOps, SkinnyGatedMatchesMatmulThenActivation) {
  for (int n : {1, 3, 8}) {
    for (int in : {64, 1032}) {
      for (bool gelu : {false, true}) {
        SCOPED_TRACE(::testing::Message() << n << "x" << in << " gelu " << gelu);
        const int width = 77;
        const auto xb = to_bf16_host(randn(static_cast<size_t>(n) * in, 100 + n)),
                   wb = to_bf16_host(randn(size_t{2} * width * in, 101));
        const auto xf = bf16_to_floats(xb), wf = bf16_to_floats(wb);
        std::vector<float> y(static_cast<size_t>(n) * 2 * width), ref(static_cast<size_t>(n) * width);
        xq::matmul_nt(xf.data(), wf.data(), nullptr, y.data(), n, in, 2 * width);
        for (int r = 0; r < n; ++r)
          (gelu ? gelu_tanh_mul : silu_mul)(y.data() + r * 2 * width,
                                            y.data() + r * 2 * width + width,
                                            ref.data() + r * width, width);
        DeviceBuf<bf16> d_x(xb), d_w(wb), d_act(ref.size());
        skinny_gated(d_x.get(), d_w.get(), d_act.get(), n, in, width, gelu, stream_);
        EXPECT_LT(rel_err(bf16_to_floats(d_act.download()), ref), 3e-3);
      }
    }
  }
}

}  // namespace
}  // namespace xq::cuda
