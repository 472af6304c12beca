// XQuant-CL's accumulator kernels (kernels/cuda/cl_ops.h) against host references: dequantized
// rows added to an fp32 accumulator as the CPU's running sum adds them (quantizer.h's
// dequantize), the new rows' deltas against their accumulator rows, the rebuilt bf16 rows (with
// the layer's RMSNorm for the residual stream, zeros at padding), and the lifting product that
// adds latent rows into the accumulator. Skips without a CUDA GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/cache/quantizer.h"
#include "kernels/cpu/half.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/cl_ops.h"
#include "tests/unit/cuda_test_support.h"

namespace xq::cuda {
namespace {

using test::bf16_bits;
using test::DeviceBuf;
using test::GpuTest;

std::vector<float> normal(size_t n, unsigned seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

// One row as the page store holds it (quantizer.h's packing; fp16 at 16 bits) and its values
// as the CPU reads them back.
struct StoredRow {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};
StoredRow store_row(const float* x, const QuantRowLayout& l) {
  StoredRow r;
  r.bytes.resize(l.bytes());
  r.values.resize(l.width);
  if (l.bits == 16) {
    for (int j = 0; j < l.width; ++j) {
      const uint16_t h = float_to_half(x[j]);
      std::memcpy(r.bytes.data() + 2 * j, &h, 2);
      r.values[j] = half_to_float(h);
    }
    return r;
  }
  std::vector<uint32_t> words(l.words());
  std::vector<uint16_t> scales(l.groups()), zeros(l.groups());
  quantize(x, l.width, l.bits, l.group, words.data(), scales.data(), zeros.data());
  dequantize(words.data(), scales.data(), zeros.data(), l.width, l.bits, l.group, r.values.data());
  std::memcpy(r.bytes.data(), words.data(), 4 * words.size());
  std::memcpy(r.bytes.data() + 4 * words.size(), scales.data(), 2 * scales.size());
  std::memcpy(r.bytes.data() + 4 * words.size() + 2 * scales.size(), zeros.data(),
              2 * zeros.size());
  return r;
}

using CudaClRows = GpuTest;

TEST_F(CudaClRows, DequantizedRowsAddToTheAccumulatorAsOnTheCpu) {
  const int rows = 7, pages = 2;
  for (int bits : {2, 3, 4, 8, 16}) {
    for (int width : {40, 128}) {  // 40: a partial last group of 16
      SCOPED_TRACE(::testing::Message() << "bits " << bits << " width " << width);
      const QuantRowLayout layout{width, bits, 16};
      const auto x = normal(static_cast<size_t>(rows) * width, 3 + bits + width, 0.5f);
      // Row i at page i % 2, slot 15 - i; the last row has no cache row (padding).
      std::vector<int> page, slot;
      const size_t page_bytes = kPageRows * layout.bytes();
      std::vector<uint8_t> store(pages * page_bytes, 0x3c);
      std::vector<std::vector<float>> values(rows);
      for (int i = 0; i < rows; ++i) {
        page.push_back(i == rows - 1 ? -1 : i % pages);
        slot.push_back(kPageRows - 1 - i);
        const StoredRow r = store_row(x.data() + static_cast<size_t>(i) * width, layout);
        values[i] = r.values;
        if (page[i] >= 0)
          std::copy(r.bytes.begin(), r.bytes.end(),
                    store.begin() + page[i] * page_bytes + slot[i] * layout.bytes());
      }
      DeviceBuf<uint8_t> d_store(store);
      DeviceBuf<int> d_page(page), d_slot(slot);
      const auto acc0 = normal(static_cast<size_t>(rows) * width, 50 + bits, 2.0f);
      for (bool accumulate : {true, false}) {
        DeviceBuf<float> d_acc(acc0);
        dequantize_rows_add(d_store.get(), page_bytes, layout, rows,
                            RowMap{d_page.get(), d_slot.get()}, d_acc.get(), width, accumulate,
                            stream_);
        const auto got = d_acc.download();
        for (int i = 0; i < rows; ++i) {
          for (int j = 0; j < width; ++j) {
            const size_t k = static_cast<size_t>(i) * width + j;
            if (page[i] < 0) {
              ASSERT_EQ(got[k], acc0[k]) << "padding row changed";
              continue;
            }
            const float want = (accumulate ? acc0[k] : 0.0f) + values[i][j];
            ASSERT_NEAR(got[k], want, 1e-6f * (1.0f + std::fabs(want))) << "row " << i;
          }
        }
      }
    }
  }
}

TEST_F(CudaClRows, NewRowsDeltasAreTakenAgainstTheirWorkspaceRows) {
  const int width = 48, ws_rows = 3 * kPageRows, n = 4;
  const auto acc = normal(static_cast<size_t>(ws_rows) * width, 1);
  const int src_stride = width + 8;  // a column slice of wider rows
  const auto src = normal(static_cast<size_t>(n) * src_stride, 2);
  const std::vector<int> page = {0, 2, 2, 1}, slot = {3, 0, 15, 9};
  DeviceBuf<float> d_acc(acc), d_src(src), d_out(static_cast<size_t>(n) * width);
  DeviceBuf<int> d_page(page), d_slot(slot);
  for (bool subtract : {true, false}) {
    cl_new_deltas(d_src.get(), src_stride, d_acc.get(), RowMap{d_page.get(), d_slot.get()}, n,
                  width, subtract, d_out.get(), stream_);
    const auto got = d_out.download();
    for (int i = 0; i < n; ++i) {
      const size_t r = static_cast<size_t>(page[i]) * kPageRows + slot[i];
      for (int j = 0; j < width; ++j) {
        const float s = src[static_cast<size_t>(i) * src_stride + j];
        ASSERT_EQ(got[static_cast<size_t>(i) * width + j], subtract ? s - acc[r * width + j] : s)
            << "row " << i << " col " << j;
      }
    }
  }
}

TEST_F(CudaClRows, RebuiltRowsAreTheAccumulatorOrItsNormWithZeroPadding) {
  const int width = 96, n = 5;
  auto acc = normal(static_cast<size_t>(n) * width, 4, 3.0f);
  acc[2 * width + 7] = NAN;  // a padding row's garbage must not come through
  const std::vector<int> pos = {0, 1, -1, 17, -1};
  const auto w = normal(width, 5, 0.3f);
  DeviceBuf<float> d_acc(acc), d_w(w);
  DeviceBuf<int> d_pos(pos);
  DeviceBuf<bf16> d_out(static_cast<size_t>(n) * width);
  for (int mode = 0; mode < 3; ++mode) {  // no norm, Llama's, Gemma's (1 + w)
    SCOPED_TRACE(::testing::Message() << "mode " << mode);
    const bool one_plus = mode == 2;
    cl_rebuilt_rows(d_acc.get(), n, width, d_pos.get(), mode == 0 ? nullptr : d_w.get(), 1e-6f,
                    one_plus, d_out.get(), stream_);
    const auto got = d_out.download();
    for (int i = 0; i < n; ++i) {
      std::vector<float> want(acc.begin() + static_cast<size_t>(i) * width,
                              acc.begin() + static_cast<size_t>(i + 1) * width);
      if (mode > 0 && pos[i] >= 0)
        xq::rmsnorm(want.data(), w.data(), want.data(), 1, width, 1e-6f, one_plus);
      for (int j = 0; j < width; ++j) {
        const float g = __bfloat162float(got[static_cast<size_t>(i) * width + j]);
        if (pos[i] < 0) {
          ASSERT_EQ(bf16_bits(got[static_cast<size_t>(i) * width + j]), 0u) << "row " << i;
          continue;
        }
        // One bf16 step at most: the kernel's fp32 product may round differently.
        ASSERT_NEAR(g, want[j], std::fabs(want[j]) * 8e-3f + 1e-6f) << "row " << i << " col " << j;
      }
    }
  }
}

TEST_F(CudaClRows, LiftingProductAddsIntoTheAccumulator) {
  const int n = 37, in = 64, out = 160;
  auto to_bf16_host = [](const std::vector<float>& v) {
    std::vector<bf16> b(v.size());
    for (size_t i = 0; i < v.size(); ++i) b[i] = __float2bfloat16_rn(v[i]);
    return b;
  };
  const auto xb = to_bf16_host(normal(static_cast<size_t>(n) * in, 6));
  const auto wb = to_bf16_host(normal(static_cast<size_t>(in) * out, 7, 0.2f));
  const auto y0 = normal(static_cast<size_t>(n) * out, 8);
  DeviceBuf<bf16> d_x(xb), d_w(wb);
  cublasHandle_t blas = nullptr;
  check(cublasCreate(&blas), "cublasCreate");
  check(cublasSetStream(blas, stream_), "cublasSetStream");
  for (bool accumulate : {true, false}) {
    DeviceBuf<float> d_y(y0);
    matmul_nn_add(blas, d_x.get(), d_w.get(), d_y.get(), n, in, out, accumulate);
    const auto got = d_y.download();
    for (int r = 0; r < n; ++r) {
      for (int c = 0; c < out; ++c) {
        double want = accumulate ? y0[static_cast<size_t>(r) * out + c] : 0.0;
        for (int k = 0; k < in; ++k)
          want += static_cast<double>(__bfloat162float(xb[static_cast<size_t>(r) * in + k])) *
                  __bfloat162float(wb[static_cast<size_t>(k) * out + c]);
        ASSERT_NEAR(got[static_cast<size_t>(r) * out + c], want, 1e-4 * (1.0 + std::fabs(want)))
            << "row " << r << " col " << c;
      }
    }
  }
  cublasDestroy(blas);
}

}  // namespace
}  // namespace xq::cuda
