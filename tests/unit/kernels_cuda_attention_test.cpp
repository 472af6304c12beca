// The CUDA paged attention kernels (kernels/cuda/cuda_ops.h attention, and decode_ops.h's
// split-context paged_attention_splits + attention_combine at 1, 3 and 7 splits) against a plain
// double-precision softmax(q K^T) V written here: causal, GQA, window and softcap on and off,
// a batch mixing prefill rows and decode rows of sequences at different positions, pages in a
// shuffled order. Skips without a CUDA GPU (the argument checks run everywhere).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/half.h"
#include "kernels/cuda/decode_ops.h"
#include "tests/unit/cuda_test_support.h"

namespace xq::cuda {
namespace {

using test::DeviceBuf;
using test::GpuTest;

constexpr int kHeads = 8, kKvHeads = 2;
constexpr uint16_t kHalfNan = 0x7e00;

// (start_pos, n) of each sequence: prefill from scratch, a prefill continuing past a chunk of
// 128, decodes at a page boundary, at the first position and deep in a long context.
const std::vector<std::pair<int, int>> kSeqShapes = {{0, 37}, {150, 20}, {300, 1}, {16, 1},
                                                     {0, 1},  {1000, 3}, {5000, 1}};
// The order the sequences' rows take in q (not the order of seqs).
const std::vector<int> kRowOrder = {3, 0, 5, 2, 6, 1, 4};

struct Batch {
  int head_dim = 0, row_stride = 0, rows = 0;
  size_t page_stride = 0;
  std::vector<AttnSeq> seqs;
  std::vector<int> tables, row_seq;
  std::vector<uint16_t> store;           // pool layout: a page's K rows, then its V rows
  std::vector<std::vector<float>> k, v;  // per sequence: [position][kv head * head_dim]
  std::vector<float> q;                  // [rows, kHeads * head_dim]
};

Batch make_batch(int head_dim, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Batch b;
  b.head_dim = head_dim;
  b.row_stride = kKvHeads * head_dim + 4;
  b.page_stride = 2 * kPageRows * static_cast<size_t>(b.row_stride);
  const int kv_dim = kKvHeads * head_dim;
  // Pages: every sequence's pages, plus a few no table names, handed out in a shuffled order.
  int total_pages = 5;
  for (auto [start, n] : kSeqShapes) total_pages += (start + n + kPageRows - 1) / kPageRows;
  std::vector<int> free_pages(total_pages);
  std::iota(free_pages.begin(), free_pages.end(), 0);
  std::shuffle(free_pages.begin(), free_pages.end(), rng);
  // Every element starts as NaN: a read of a position the kernel must not see shows up.
  b.store.assign(total_pages * b.page_stride, kHalfNan);
  size_t next_page = 0;
  for (auto [start, n] : kSeqShapes) {
    AttnSeq s;
    s.start_pos = start;
    s.n = n;
    s.table = static_cast<int>(b.tables.size());
    const int len = start + n;
    for (int j = 0; j < (len + kPageRows - 1) / kPageRows; ++j) {
      b.tables.push_back(free_pages[next_page++]);
    }
    std::vector<float> ks(static_cast<size_t>(len) * kv_dim), vs(ks.size());
    for (int pos = 0; pos < len; ++pos) {
      const size_t page = b.tables[s.table + pos / kPageRows];
      const size_t at =
          page * b.page_stride + (pos % kPageRows) * static_cast<size_t>(b.row_stride);
      const size_t v_at = at + kPageRows * static_cast<size_t>(b.row_stride);
      for (int d = 0; d < kv_dim; ++d) {
        const uint16_t kh = float_to_half(nd(rng)), vh = float_to_half(nd(rng));
        b.store[at + d] = kh;
        b.store[v_at + d] = vh;
        ks[static_cast<size_t>(pos) * kv_dim + d] = half_to_float(kh);
        vs[static_cast<size_t>(pos) * kv_dim + d] = half_to_float(vh);
      }
    }
    b.k.push_back(std::move(ks));
    b.v.push_back(std::move(vs));
    b.seqs.push_back(s);
  }
  for (int i : kRowOrder) {
    b.seqs[i].q_row = b.rows;
    b.rows += b.seqs[i].n;
    for (int r = 0; r < b.seqs[i].n; ++r) b.row_seq.push_back(i);
  }
  b.q.resize(static_cast<size_t>(b.rows) * kHeads * head_dim);
  for (float& x : b.q) x = nd(rng);
  return b;
}

// out[rows, kHeads * head_dim] in double, straight from the definition.
std::vector<double> reference(const Batch& b, const AttnParams& p) {
  const int hd = b.head_dim, kv_dim = kKvHeads * hd;
  std::vector<double> out(b.q.size());
  for (int r = 0; r < b.rows; ++r) {
    const int si = b.row_seq[r];
    const AttnSeq& s = b.seqs[si];
    const int pos = s.start_pos + (r - s.q_row);
    const int lo = p.window > 0 ? std::max(0, pos - p.window + 1) : 0;
    for (int h = 0; h < kHeads; ++h) {
      const int kvh = h / (kHeads / kKvHeads);
      const float* q = b.q.data() + (static_cast<size_t>(r) * kHeads + h) * hd;
      std::vector<double> w(pos - lo + 1);
      double mx = -INFINITY;
      for (int j = lo; j <= pos; ++j) {
        const float* k = b.k[si].data() + static_cast<size_t>(j) * kv_dim + kvh * hd;
        double dot = 0.0;
        for (int d = 0; d < hd; ++d) dot += static_cast<double>(q[d]) * k[d];
        double sc = static_cast<double>(p.scale) * dot;
        if (p.softcap > 0.0f) sc = p.softcap * std::tanh(sc / p.softcap);
        w[j - lo] = sc;
        mx = std::max(mx, sc);
      }
      double sum = 0.0;
      for (double& x : w) sum += (x = std::exp(x - mx));
      double* o = out.data() + (static_cast<size_t>(r) * kHeads + h) * hd;
      for (int j = lo; j <= pos; ++j) {
        const float* v = b.v[si].data() + static_cast<size_t>(j) * kv_dim + kvh * hd;
        for (int d = 0; d < hd; ++d) o[d] += w[j - lo] / sum * v[d];
      }
    }
  }
  return out;
}

struct AttnCase {
  int head_dim, window;
  float softcap;
};

using CudaAttention = GpuTest;

TEST_F(CudaAttention, MatchesDoublePrecisionReference) {
  const std::vector<AttnCase> cases = {{64, 0, 0.0f},   {64, 40, 0.0f}, {128, 0, 10.0f},
                                       {80, 24, 20.0f}, {256, 0, 0.0f}, {256, 100, 0.0f}};
  unsigned seed = 500;
  for (const AttnCase& c : cases) {
    SCOPED_TRACE(::testing::Message() << "head_dim " << c.head_dim << " window " << c.window
                                      << " softcap " << c.softcap << " seed " << seed + 1);
    const Batch b = make_batch(c.head_dim, ++seed);
    AttnParams p;
    p.num_heads = kHeads;
    p.num_kv_heads = kKvHeads;
    p.head_dim = c.head_dim;
    p.window = c.window;
    // With a cap, larger scores so that the cap bends them.
    p.scale = c.softcap > 0.0f ? 0.5f : 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    p.softcap = c.softcap;
    const auto ref = reference(b, p);

    DeviceBuf<float> d_q(b.q), d_out(std::vector<float>(b.q.size(), NAN));
    DeviceBuf<int> d_row_seq(b.row_seq), d_tables(b.tables);
    DeviceBuf<AttnSeq> d_seqs(b.seqs);
    DeviceBuf<uint16_t> d_store(b.store);
    half* base = reinterpret_cast<half*>(d_store.get());
    const KvPages kv{base, base + kPageRows * b.row_stride, b.page_stride, b.row_stride};
    // Each kernel fills `d_out` (poisoned with NaN first): the single pass, then the split one.
    std::vector<std::pair<std::string, std::vector<float>>> runs;
    attention(d_q.get(), d_out.get(), b.rows, d_row_seq.get(), d_seqs.get(), d_tables.get(), kv, p,
              stream_);
    runs.emplace_back("attention", d_out.download());
    for (bool tc : {false, true}) {
      for (int splits : {1, 3, 7}) {
        const size_t n = split_partials_floats(b.rows, kHeads, splits, c.head_dim);
        DeviceBuf<float> d_acc(std::vector<float>(n, NAN)), d_ml(std::vector<float>(2 * n, NAN));
        d_out.upload(std::vector<float>(b.q.size(), NAN));
        const SplitPartials parts{d_ml.get(), d_acc.get(), splits};
        paged_attention_splits(d_q.get(), b.rows, d_row_seq.get(), d_seqs.get(), d_tables.get(),
                               kv, p, parts, stream_, tc);
        attention_combine(parts, b.rows, kHeads, c.head_dim, d_out.get(), nullptr, stream_);
        runs.emplace_back(std::string(tc ? "tensor-core " : "") + "paged_attention_splits x" +
                              std::to_string(splits),
                          d_out.download());
      }
    }

    const size_t row_len = static_cast<size_t>(kHeads) * c.head_dim;
    for (const auto& [name, got] : runs) {
      SCOPED_TRACE(name);
      // fp16 q and softmax weights in the tensor-core products: bound to their rounding.
      const double bound = name.rfind("tensor-core", 0) == 0 && paged_attention_tensor_cores(p)
                               ? 3e-3
                               : 1e-4;
      for (int r = 0; r < b.rows; ++r) {
        double num = 0.0, den = 0.0;
        for (size_t i = r * row_len; i < (r + 1) * row_len; ++i) {
          ASSERT_FALSE(std::isnan(got[i])) << "row " << r << " element " << i - r * row_len;
          num += (got[i] - ref[i]) * (got[i] - ref[i]);
          den += ref[i] * ref[i];
        }
        const AttnSeq& s = b.seqs[b.row_seq[r]];
        EXPECT_LT(std::sqrt(num / den), bound) << "row " << r << " (sequence " << b.row_seq[r]
                                              << ", position " << s.start_pos + r - s.q_row << ")";
      }
    }
  }
}

// A rebuilt workspace's rows before each sequence's start hold bf16 K without RoPE and bf16 V
// (past_rope); the kernel rotates and converts them as it stages them. The reference attends
// over the same bf16 values rotated in double; the step's own rows stay fp16 and rotated.
TEST_F(CudaAttention, PastRowsAreRotatedAndConvertedAsStaged) {
  for (int head_dim : {64, 128}) {
    SCOPED_TRACE(::testing::Message() << "head_dim " << head_dim);
    Batch b = make_batch(head_dim, 900 + head_dim);
    const int hd2 = head_dim / 2, kv_dim = kKvHeads * head_dim;
    std::vector<double> inv_freq(hd2);
    for (int i = 0; i < hd2; ++i) inv_freq[i] = std::pow(1e4, -2.0 * i / head_dim);
    for (size_t si = 0; si < b.seqs.size(); ++si) {
      const AttnSeq& s = b.seqs[si];
      for (int pos = 0; pos < s.start_pos; ++pos) {
        const size_t page = b.tables[s.table + pos / kPageRows];
        const size_t at =
            page * b.page_stride + (pos % kPageRows) * static_cast<size_t>(b.row_stride);
        const size_t v_at = at + kPageRows * static_cast<size_t>(b.row_stride);
        float* k = b.k[si].data() + static_cast<size_t>(pos) * kv_dim;
        float* v = b.v[si].data() + static_cast<size_t>(pos) * kv_dim;
        for (int h = 0; h < kKvHeads; ++h) {
          for (int i = 0; i < hd2; ++i) {
            const int lo_at = h * head_dim + i, hi_at = lo_at + hd2;
            const double c = std::cos(pos * inv_freq[i]), sn = std::sin(pos * inv_freq[i]);
            // The raw key whose rotation is about the batch's key, rounded to bf16.
            const float raw_lo = test::bf16_round(static_cast<float>(k[lo_at] * c + k[hi_at] * sn));
            const float raw_hi = test::bf16_round(static_cast<float>(k[hi_at] * c - k[lo_at] * sn));
            b.store[at + lo_at] = test::bf16_bits(__float2bfloat16_rn(raw_lo));
            b.store[at + hi_at] = test::bf16_bits(__float2bfloat16_rn(raw_hi));
            k[lo_at] = static_cast<float>(raw_lo * c - raw_hi * sn);
            k[hi_at] = static_cast<float>(raw_hi * c + raw_lo * sn);
            for (int e : {lo_at, hi_at}) {
              v[e] = test::bf16_round(v[e]);
              b.store[v_at + e] = test::bf16_bits(__float2bfloat16_rn(v[e]));
            }
          }
        }
      }
    }
    AttnParams p;
    p.num_heads = kHeads;
    p.num_kv_heads = kKvHeads;
    p.head_dim = head_dim;
    p.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const auto ref = reference(b, p);
    DeviceBuf<float> d_q(b.q), d_out(b.q.size());
    DeviceBuf<int> d_row_seq(b.row_seq), d_tables(b.tables);
    DeviceBuf<AttnSeq> d_seqs(b.seqs);
    DeviceBuf<uint16_t> d_store(b.store);
    DeviceBuf<double> d_freq(inv_freq);
    const int table_positions = 200;  // later positions take the computed angle
    DeviceBuf<float2> d_table(static_cast<size_t>(table_positions) * hd2);
    rope_table(d_freq.get(), head_dim, table_positions, d_table.get(), stream_);
    const RopeAngles angles{d_freq.get(), d_table.get(), table_positions};
    half* base = reinterpret_cast<half*>(d_store.get());
    const KvPages kv{base, base + kPageRows * b.row_stride, b.page_stride, b.row_stride};
    for (int splits : {1, 3}) {
      SCOPED_TRACE(::testing::Message() << "splits " << splits);
      const size_t n = split_partials_floats(b.rows, kHeads, splits, head_dim);
      DeviceBuf<float> d_acc(n), d_ml(2 * n);
      const SplitPartials parts{d_ml.get(), d_acc.get(), splits};
      paged_attention_splits(d_q.get(), b.rows, d_row_seq.get(), d_seqs.get(), d_tables.get(), kv,
                             p, parts, stream_, true, &angles);
      attention_combine(parts, b.rows, kHeads, head_dim, d_out.get(), nullptr, stream_);
      const auto got = d_out.download();
      double num = 0.0, den = 0.0;
      for (size_t i = 0; i < got.size(); ++i) {
        num += (got[i] - ref[i]) * (got[i] - ref[i]);
        den += ref[i] * ref[i];
      }
      EXPECT_LT(std::sqrt(num / den), 3e-3);
    }
  }
}

// The fold: each head's softmax-weighted sum of the rows' V latents (bf16, `width` wide, read
// through the K pages' table from rows of their own), with K's past rows raw as above.
TEST_F(CudaAttention, FoldSumsTheValueLatentsWithTheSoftmaxWeights) {
  for (int width : {96, 256}) {
    SCOPED_TRACE(::testing::Message() << "latent width " << width);
    const int head_dim = 64;
    const Batch b = make_batch(head_dim, 1300 + width);
    AttnParams p;
    p.num_heads = kHeads;
    p.num_kv_heads = kKvHeads;
    p.head_dim = head_dim;
    p.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    // Latent rows: [pad 16 | latent width | pad 8] per row, pages as K's, random bf16.
    const int col0 = 16, row_stride = col0 + width + 8;
    const size_t page_stride = static_cast<size_t>(kPageRows) * row_stride;
    int pages = 0;
    for (int t : b.tables) pages = std::max(pages, t + 1);
    std::mt19937 rng(77 + width);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<bf16> lat(pages * page_stride);
    for (bf16& x : lat) x = __float2bfloat16_rn(nd(rng));
    // The reference: softmax over K as the batch's reference does, weights times the latents.
    std::vector<double> ref(static_cast<size_t>(b.rows) * kHeads * width, 0.0);
    const int kv_dim = kKvHeads * head_dim;
    for (int r = 0; r < b.rows; ++r) {
      const int si = b.row_seq[r];
      const AttnSeq& s = b.seqs[si];
      const int pos = s.start_pos + (r - s.q_row);
      for (int h = 0; h < kHeads; ++h) {
        const int kvh = h / (kHeads / kKvHeads);
        const float* q = b.q.data() + (static_cast<size_t>(r) * kHeads + h) * head_dim;
        std::vector<double> w(pos + 1);
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j <= pos; ++j) {
          const float* k = b.k[si].data() + static_cast<size_t>(j) * kv_dim + kvh * head_dim;
          double dot = 0.0;
          for (int d = 0; d < head_dim; ++d) dot += static_cast<double>(q[d]) * k[d];
          mx = std::max(mx, w[j] = dot * p.scale);
        }
        for (double& x : w) sum += (x = std::exp(x - mx));
        double* o = ref.data() + (static_cast<size_t>(r) * kHeads + h) * width;
        for (int j = 0; j <= pos; ++j) {
          const size_t row = b.tables[s.table + j / kPageRows] * page_stride +
                             static_cast<size_t>(j % kPageRows) * row_stride + col0;
          for (int c = 0; c < width; ++c) o[c] += w[j] / sum * __bfloat162float(lat[row + c]);
        }
      }
    }
    DeviceBuf<float> d_q(b.q), d_out(ref.size());
    DeviceBuf<int> d_row_seq(b.row_seq), d_tables(b.tables);
    DeviceBuf<AttnSeq> d_seqs(b.seqs);
    DeviceBuf<bf16> d_lat(lat);
    // K rows 16-byte aligned: the batch's padded rows are 4 halves past a multiple of 8, so
    // read them through a store copy with rows of kv_dim + 8 halves.
    const int ld = kv_dim + 8;
    std::vector<uint16_t> aligned(pages * 2 * kPageRows * static_cast<size_t>(ld), 0);
    for (int pg = 0; pg < pages; ++pg)
      for (int half_part = 0; half_part < 2; ++half_part)
        for (int j = 0; j < kPageRows; ++j)
          for (int d = 0; d < kv_dim; ++d)
            aligned[(static_cast<size_t>(pg) * 2 * kPageRows + half_part * kPageRows + j) * ld + d] =
                b.store[pg * b.page_stride + (half_part * kPageRows + j) * b.row_stride + d];
    DeviceBuf<uint16_t> d_aligned(aligned);
    half* abase = reinterpret_cast<half*>(d_aligned.get());
    const KvPages kv{abase, abase + kPageRows * ld, 2 * kPageRows * static_cast<size_t>(ld), ld};
    const FoldRows fold{d_lat.get(), page_stride, row_stride, col0, width};
    for (int splits : {1, 4}) {
      SCOPED_TRACE(::testing::Message() << "splits " << splits);
      const size_t n = split_partials_floats(b.rows, kHeads, splits, width);
      DeviceBuf<float> d_acc(n), d_ml(2 * n);
      const SplitPartials parts{d_ml.get(), d_acc.get(), splits};
      paged_attention_splits(d_q.get(), b.rows, d_row_seq.get(), d_seqs.get(), d_tables.get(), kv,
                             p, parts, stream_, true, nullptr, &fold);
      attention_combine(parts, b.rows, kHeads, width, d_out.get(), nullptr, stream_);
      const auto got = d_out.download();
      double num = 0.0, den = 0.0;
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_FALSE(std::isnan(got[i])) << i;
        num += (got[i] - ref[i]) * (got[i] - ref[i]);
        den += ref[i] * ref[i];
      }
      EXPECT_LT(std::sqrt(num / den), 3e-3);
    }
  }
}

TEST(CudaAttentionArgs, RejectsHeadDimAndHeadRatioItCannotServe) {
  AttnParams p;
  p.num_heads = 8;
  p.num_kv_heads = 2;
  p.head_dim = 512;
  EXPECT_THROW(attention(nullptr, nullptr, 1, nullptr, nullptr, nullptr, KvPages{}, p, nullptr),
               CudaError);
  p.head_dim = 64;
  p.num_kv_heads = 3;
  EXPECT_THROW(attention(nullptr, nullptr, 1, nullptr, nullptr, nullptr, KvPages{}, p, nullptr),
               CudaError);
}

}  // namespace
}  // namespace xq::cuda
