// The CUDA paged-row kernels (kernels/cuda/cuda_ops.h): fp16 K/V page writes, and quantize_rows /
// dequantize_rows against engine/cache/quantizer byte for byte, over whole page stores (so rows
// land where the map says and nothing else is touched). Skips without a CUDA GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "engine/cache/quantizer.h"
#include "kernels/cpu/half.h"
#include "tests/unit/cuda_test_support.h"

namespace xq::cuda {
namespace {

using test::bf16_bits;
using test::DeviceBuf;
using test::GpuTest;

// Rows of `width` values with the cases the quantizer has rules for: ordinary values, scattered
// infinities and NaN, a constant row, values beyond the fp16 range, a row without any finite
// value, a row whose minimum is a zero written both as -0 and +0, and tiny (fp16-subnormal) ones.
std::vector<float> quant_inputs(int width, int rows, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<float> x(static_cast<size_t>(rows) * width);
  for (float& v : x) v = nd(rng);
  auto row = [&](int r) { return x.data() + static_cast<size_t>(r) * width; };
  std::uniform_int_distribution<int> at(0, width - 1);
  for (int k = 0; k < 5; ++k) {
    row(1)[at(rng)] = INFINITY;
    row(1)[at(rng)] = -INFINITY;
    row(1)[at(rng)] = NAN;
  }
  std::fill(row(2), row(2) + width, 0.7f);
  for (int k = 0; k < 6; ++k) row(3)[at(rng)] = (k % 2 ? -1.0f : 1.0f) * 1e6f;
  for (int j = 0; j < width; ++j)
    row(4)[j] = j % 3 == 0 ? NAN : (j % 3 == 1 ? INFINITY : -INFINITY);
  for (int j = 0; j < width; ++j) row(5)[j] = std::fabs(row(5)[j]);
  for (int j = 0; j < width; j += 7) row(5)[j] = (j / 7) % 2 ? 0.0f : -0.0f;
  for (int j = 0; j < width; ++j) row(6)[j] *= 1e-6f;
  return x;
}

// A page store of `pages` pages and the map of `rows` batch rows onto shuffled (page, slot)
// places, the last row skipped (page -1).
struct Placement {
  std::vector<int> page, slot;
};
Placement place_rows(int rows, int pages, unsigned seed) {
  std::vector<int> places(static_cast<size_t>(pages) * kPageRows);
  std::iota(places.begin(), places.end(), 0);
  std::mt19937 rng(seed);
  std::shuffle(places.begin(), places.end(), rng);
  Placement p;
  for (int i = 0; i < rows; ++i) {
    p.page.push_back(i == rows - 1 ? -1 : places[i] / kPageRows);
    p.slot.push_back(places[i] % kPageRows);
  }
  return p;
}

// The bytes quantizer.h produces for one row of the layout.
std::vector<uint8_t> cpu_quant_row(const float* x, const QuantRowLayout& l) {
  std::vector<uint8_t> out(l.bytes());
  if (l.bits == 16) {
    for (int j = 0; j < l.width; ++j) {
      const uint16_t h = float_to_half(x[j]);
      std::memcpy(out.data() + 2 * j, &h, 2);
    }
    return out;
  }
  std::vector<uint32_t> words(l.words());
  std::vector<uint16_t> scales(l.groups()), zeros(l.groups());
  quantize(x, l.width, l.bits, l.group, words.data(), scales.data(), zeros.data());
  std::memcpy(out.data(), words.data(), 4 * words.size());
  std::memcpy(out.data() + 4 * words.size(), scales.data(), 2 * scales.size());
  std::memcpy(out.data() + 4 * words.size() + 2 * scales.size(), zeros.data(), 2 * zeros.size());
  return out;
}

struct QuantCase {
  int bits, group, width;
};
std::vector<QuantCase> quant_cases() {
  std::vector<QuantCase> cases;
  for (int bits : {2, 3, 4, 8}) {
    for (int group : {32, 128}) {
      for (int width : {64, 100, 640, 4096}) cases.push_back({bits, group, width});
    }
  }
  for (int width : {64, 100, 4096}) cases.push_back({16, 32, width});
  return cases;
}

using CudaPagedRows = GpuTest;

TEST_F(CudaPagedRows, QuantizeRowsIsByteIdenticalToTheCpuQuantizer) {
  const int rows = 8, pages = 3;
  for (const QuantCase& c : quant_cases()) {
    SCOPED_TRACE(::testing::Message()
                 << "bits " << c.bits << " group " << c.group << " width " << c.width);
    const QuantRowLayout layout{c.width, c.bits, c.group};
    auto x = quant_inputs(c.width, rows, 100 + c.width + c.bits);
    if (c.bits == 16) {  // fp16 rows keep NaN payloads as the conversion makes them: no NaN here
      for (float& v : x) v = std::isnan(v) ? 1.5f : v;
    }
    const Placement pl = place_rows(rows, pages, 7 * c.width + c.bits);
    const size_t page_bytes = kPageRows * layout.bytes() + 12;  // pages padded apart
    std::vector<uint8_t> expect(pages * page_bytes, 0xab);
    for (int i = 0; i < rows; ++i) {
      if (pl.page[i] < 0) continue;
      const auto bytes = cpu_quant_row(x.data() + static_cast<size_t>(i) * c.width, layout);
      std::copy(bytes.begin(), bytes.end(),
                expect.begin() + pl.page[i] * page_bytes + pl.slot[i] * layout.bytes());
    }
    DeviceBuf<float> d_x(x);
    DeviceBuf<uint8_t> d_store(std::vector<uint8_t>(expect.size(), 0xab));
    DeviceBuf<int> d_page(pl.page), d_slot(pl.slot);
    quantize_rows(d_x.get(), rows, layout, d_store.get(), page_bytes,
                  RowMap{d_page.get(), d_slot.get()}, stream_);
    const auto got = d_store.download();
    for (size_t b = 0; b < got.size(); ++b) {
      const size_t in_page = b % page_bytes;
      ASSERT_EQ(got[b], expect[b])
          << "page " << b / page_bytes << " slot " << in_page / layout.bytes() << " byte "
          << in_page % layout.bytes();
    }
  }
}

TEST_F(CudaPagedRows, DequantizeRowsMatchesTheCpuDequantizer) {
  const int rows = 8, pages = 3;
  for (const QuantCase& c : quant_cases()) {
    SCOPED_TRACE(::testing::Message()
                 << "bits " << c.bits << " group " << c.group << " width " << c.width);
    const QuantRowLayout layout{c.width, c.bits, c.group};
    const auto x = quant_inputs(c.width, rows, 200 + c.width + c.bits);
    const Placement pl = place_rows(rows, pages, 5 * c.width + c.bits);
    const size_t page_bytes = kPageRows * layout.bytes() + 4;
    std::vector<uint8_t> store(pages * page_bytes, 0x5c);
    for (int i = 0; i < rows; ++i) {
      if (pl.page[i] < 0) continue;
      const auto bytes = cpu_quant_row(x.data() + static_cast<size_t>(i) * c.width, layout);
      std::copy(bytes.begin(), bytes.end(),
                store.begin() + pl.page[i] * page_bytes + pl.slot[i] * layout.bytes());
    }
    DeviceBuf<uint8_t> d_store(store);
    DeviceBuf<int> d_page(pl.page), d_slot(pl.slot);
    const bf16 poison = __float2bfloat16_rn(-12345.0f);
    DeviceBuf<bf16> d_out(std::vector<bf16>(static_cast<size_t>(rows) * c.width, poison));
    dequantize_rows(d_store.get(), page_bytes, layout, rows, RowMap{d_page.get(), d_slot.get()},
                    d_out.get(), stream_);
    const auto got = d_out.download();
    for (int i = 0; i < rows; ++i) {
      const bf16* g = got.data() + static_cast<size_t>(i) * c.width;
      if (pl.page[i] < 0) {
        for (int j = 0; j < c.width; ++j) ASSERT_EQ(bf16_bits(g[j]), bf16_bits(poison));
        continue;
      }
      const uint8_t* row = store.data() + pl.page[i] * page_bytes + pl.slot[i] * layout.bytes();
      std::vector<float> ref(c.width), fused(c.width);
      if (c.bits == 16) {
        for (int j = 0; j < c.width; ++j) {
          uint16_t h;
          std::memcpy(&h, row + 2 * j, 2);
          ref[j] = fused[j] = half_to_float(h);
        }
      } else {
        std::vector<uint32_t> words(layout.words());
        std::vector<uint16_t> scales(layout.groups()), zeros(layout.groups());
        std::memcpy(words.data(), row, 4 * words.size());
        std::memcpy(scales.data(), row + 4 * words.size(), 2 * scales.size());
        std::memcpy(zeros.data(), row + 4 * words.size() + 2 * scales.size(), 2 * zeros.size());
        dequantize(words.data(), scales.data(), zeros.data(), c.width, c.bits, c.group, ref.data());
        // zero + scale * code may be contracted into one fma (the GPU does, the host compiler
        // may): either rounding is the CPU's answer.
        std::vector<uint8_t> codes(c.width);
        unpack_codes(words.data(), c.width, c.bits, codes.data());
        for (int j = 0; j < c.width; ++j) {
          fused[j] = std::fma(half_to_float(scales[j / c.group]), static_cast<float>(codes[j]),
                              half_to_float(zeros[j / c.group]));
        }
      }
      for (int j = 0; j < c.width; ++j) {
        if (std::isnan(ref[j])) {  // fp16 rows keep NaN (payload bits are not pinned)
          ASSERT_TRUE(std::isnan(__bfloat162float(g[j]))) << "row " << i << " col " << j;
          continue;
        }
        const uint16_t b = bf16_bits(g[j]);
        ASSERT_TRUE(b == bf16_bits(__float2bfloat16_rn(ref[j])) ||
                    b == bf16_bits(__float2bfloat16_rn(fused[j])))
            << "row " << i << " col " << j << ": " << __bfloat162float(g[j]) << " vs " << ref[j];
      }
    }
  }
}

// Rows taken from and put back into a column slice of wider rows (x_stride, out_stride), as the
// GQA latent's parts are: the same bytes as the slice quantized alone, and nothing outside the
// slice written on the way back.
TEST_F(CudaPagedRows, StridedRowsAreTheirSliceAlone) {
  const int rows = 8, pages = 2, stride = 150, col = 37;
  for (int bits : {3, 16}) {
    SCOPED_TRACE(::testing::Message() << "bits " << bits);
    const QuantRowLayout layout{100, bits, 32};
    auto wide = quant_inputs(stride, rows, 31 + bits);
    for (float& v : wide) v = std::isnan(v) ? 1.5f : v;  // fp16 rows keep NaN payloads as made
    std::vector<float> slice(static_cast<size_t>(rows) * layout.width);
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < layout.width; ++j)
        slice[i * layout.width + j] = wide[i * stride + col + j];
    const Placement pl = place_rows(rows, pages, 3);
    const size_t page_bytes = kPageRows * layout.bytes();
    DeviceBuf<float> d_wide(wide), d_slice(slice);
    DeviceBuf<uint8_t> a(std::vector<uint8_t>(pages * page_bytes, 0x11));
    DeviceBuf<uint8_t> b(std::vector<uint8_t>(pages * page_bytes, 0x11));
    DeviceBuf<int> d_page(pl.page), d_slot(pl.slot);
    const RowMap map{d_page.get(), d_slot.get()};
    quantize_rows(d_wide.get() + col, rows, layout, a.get(), page_bytes, map, stream_, stride);
    quantize_rows(d_slice.get(), rows, layout, b.get(), page_bytes, map, stream_);
    ASSERT_EQ(a.download(), b.download());
    const bf16 poison = __float2bfloat16_rn(-12345.0f);
    DeviceBuf<bf16> d_out(std::vector<bf16>(static_cast<size_t>(rows) * stride, poison));
    DeviceBuf<bf16> d_ref(std::vector<bf16>(slice.size(), poison));
    dequantize_rows(a.get(), page_bytes, layout, rows, map, d_out.get() + col, stream_, stride);
    dequantize_rows(a.get(), page_bytes, layout, rows, map, d_ref.get(), stream_);
    const auto out = d_out.download(), ref = d_ref.download();
    for (int i = 0; i < rows; ++i) {
      for (int j = 0; j < stride; ++j) {
        const bool in = pl.page[i] >= 0 && j >= col && j < col + layout.width;
        const bf16 want = in ? ref[i * layout.width + j - col] : poison;
        ASSERT_EQ(bf16_bits(out[i * stride + j]), bf16_bits(want)) << "row " << i << " col " << j;
      }
    }
  }
}

// Both store layouts: the pool's (a page's K rows, then its V rows) and the workspace's (K and V
// in two arrays of contiguous rows), rows padded past `dim`.
TEST_F(CudaPagedRows, WriteKvRowsPutsFp16RowsWhereTheMapSays) {
  const int rows = 11, pages = 4, dim = 96, row_stride = dim + 8;
  std::mt19937 rng(300);
  std::normal_distribution<float> nd(0.0f, 4.0f);
  std::vector<float> k(rows * dim), v(rows * dim);
  for (float& f : k) f = nd(rng);
  for (float& f : v) f = nd(rng);
  const Placement pl = place_rows(rows, pages, 301);
  const uint16_t kUntouched = 0x7e01;
  for (bool pool : {true, false}) {
    SCOPED_TRACE(pool ? "pool layout" : "workspace layout");
    const size_t page_stride = (pool ? 2 : 1) * kPageRows * static_cast<size_t>(row_stride);
    const size_t total = pool ? pages * page_stride : 2 * pages * page_stride;
    const size_t v_at = pool ? kPageRows * static_cast<size_t>(row_stride) : pages * page_stride;
    std::vector<uint16_t> expect(total, kUntouched);
    for (int i = 0; i < rows; ++i) {
      if (pl.page[i] < 0) continue;
      const size_t at = pl.page[i] * page_stride + pl.slot[i] * static_cast<size_t>(row_stride);
      for (int j = 0; j < dim; ++j) {
        expect[at + j] = float_to_half(k[i * dim + j]);
        expect[v_at + at + j] = float_to_half(v[i * dim + j]);
      }
    }
    DeviceBuf<float> d_k(k), d_v(v);
    DeviceBuf<int> d_page(pl.page), d_slot(pl.slot);
    DeviceBuf<uint16_t> d_store(std::vector<uint16_t>(total, kUntouched));
    half* base = reinterpret_cast<half*>(d_store.get());
    write_kv_rows(d_k.get(), d_v.get(), rows, dim, RowMap{d_page.get(), d_slot.get()},
                  KvPages{base, base + v_at, page_stride, row_stride}, stream_);
    const auto got = d_store.download();
    ASSERT_EQ(got, expect);
    // The round trip: every written row reads back within fp16 rounding.
    for (int i = 0; i < rows - 1; ++i) {
      const size_t at = pl.page[i] * page_stride + pl.slot[i] * static_cast<size_t>(row_stride);
      for (int j = 0; j < dim; ++j) {
        // Half an fp16 step: 2^-11 relative, 2^-25 absolute among the subnormals.
        const float tk = std::fabs(k[i * dim + j]) * 4.9e-4f + 3e-8f;
        const float tv = std::fabs(v[i * dim + j]) * 4.9e-4f + 3e-8f;
        ASSERT_NEAR(half_to_float(got[at + j]), k[i * dim + j], tk);
        ASSERT_NEAR(half_to_float(got[v_at + at + j]), v[i * dim + j], tv);
      }
    }
  }
}

// Argument checks happen on the host before any launch, so they run without a GPU too.
TEST(CudaQuantRowsArgs, RejectsBitsAndMisalignedStores) {
  const QuantRowLayout bad_bits{64, 5, 32};
  EXPECT_THROW(quantize_rows(nullptr, 1, bad_bits, nullptr, 0, RowMap{}, nullptr), CudaError);
  EXPECT_THROW(dequantize_rows(nullptr, 0, bad_bits, 1, RowMap{}, nullptr, nullptr), CudaError);
  const QuantRowLayout four{64, 4, 32};
  alignas(4) uint8_t store[8] = {};
  EXPECT_THROW(quantize_rows(nullptr, 1, four, store + 2, 4, RowMap{}, nullptr), CudaError);
  EXPECT_THROW(dequantize_rows(store, 6, four, 1, RowMap{}, nullptr, nullptr), CudaError);
}

}  // namespace
}  // namespace xq::cuda
