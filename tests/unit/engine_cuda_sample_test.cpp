// The CUDA row summaries (kernels/cuda/sample_ops.h) against the host reference summarize_row
// (engine/logit_summary.h) on fresh random rows: the same candidates in the same order, the
// sums within float rounding, and the same drawn token unless the uniform falls within rounding
// of a boundary between two tokens. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/logit_summary.h"
#include "kernels/cuda/sample_ops.h"
#include "tests/unit/cuda_test_support.h"

namespace xq::cuda {
namespace {

using test::DeviceBuf;
using test::GpuTest;

using CudaSampleRows = GpuTest;

struct Rows {
  int vocab, listable, k;
  std::vector<float> logits;
  std::vector<float> inv_t;
  std::vector<double> u01;
};

// Checks every row of `in` against the host reference.
void expect_matches_host(const Rows& in, cudaStream_t stream) {
  const int rows = static_cast<int>(in.inv_t.size()), k = in.k;
  DeviceBuf<float> logits(in.logits), inv_t(in.inv_t);
  DeviceBuf<double> u01(in.u01);
  DeviceBuf<int> ids(static_cast<size_t>(rows) * k), drawn(rows);
  DeviceBuf<float> vals(static_cast<size_t>(rows) * k), drawn_logit(rows);
  DeviceBuf<double> lse(rows), sum_t(rows);
  DeviceBuf<uint8_t> scratch(summary_scratch_bytes(rows, in.vocab, k));
  LogitSummaries out{ids.get(), vals.get(), lse.get(), sum_t.get(), drawn.get(), drawn_logit.get()};
  summarize_logit_rows(logits.get(), rows, in.vocab, in.listable, k, inv_t.get(), u01.get(),
                       scratch.get(), out, stream);
  const std::vector<int> g_ids = ids.download(), g_drawn = drawn.download();
  const std::vector<float> g_vals = vals.download(), g_dl = drawn_logit.download();
  const std::vector<double> g_lse = lse.download(), g_sum = sum_t.download();
  int boundary_draws = 0;
  for (int r = 0; r < rows; ++r) {
    const std::span<const float> row(in.logits.data() + static_cast<size_t>(r) * in.vocab,
                                     in.vocab);
    RowDrawSpec spec;
    spec.inv_temperature = in.inv_t[r];
    spec.u01 = in.u01[r];
    const RowSummary want = summarize_row(row, in.listable, k, spec);
    for (size_t i = 0; i < want.ids.size(); ++i) {
      ASSERT_EQ(g_ids[r * k + i], want.ids[i]) << "row " << r << " candidate " << i;
      ASSERT_EQ(g_vals[r * k + i], want.logits[i]) << "row " << r << " candidate " << i;
    }
    for (size_t i = want.ids.size(); i < static_cast<size_t>(k); ++i) EXPECT_EQ(g_ids[r * k + i], -1);
    EXPECT_NEAR(g_lse[r], want.lse, 1e-5 * std::max(1.0, std::abs(want.lse))) << "row " << r;
    if (spec.inv_temperature <= 0.0f) continue;
    EXPECT_NEAR(g_sum[r], want.sum_t, 1e-5 * want.sum_t) << "row " << r;
    if (spec.u01 < 0.0) {
      EXPECT_EQ(g_drawn[r], -1);
      continue;
    }
    ASSERT_GE(g_drawn[r], 0) << "row " << r;
    EXPECT_EQ(g_dl[r], row[g_drawn[r]]);
    if (g_drawn[r] == want.drawn) continue;
    // A different token only where u sits within rounding of the boundary between them.
    const float shift = want.logits[0] * spec.inv_temperature;
    double cum = 0.0;
    const int lo = std::min(g_drawn[r], want.drawn), hi = std::max(g_drawn[r], want.drawn);
    for (int t = 0; t < hi; ++t) {
      cum += std::exp(static_cast<double>(row[t]) * spec.inv_temperature - shift);
      if (t == lo) break;
    }
    EXPECT_NEAR(cum / want.sum_t, spec.u01, 1e-5) << "row " << r << ": drawn " << g_drawn[r]
                                                   << ", host " << want.drawn;
    ++boundary_draws;
  }
  EXPECT_LE(boundary_draws, 1);
}

Rows random_rows(int rows, int vocab, int listable, int k, unsigned seed, float spread) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, spread);
  std::uniform_real_distribution<double> ud(0.0, 1.0);
  Rows in{vocab, listable, k, std::vector<float>(static_cast<size_t>(rows) * vocab), {}, {}};
  for (float& x : in.logits) x = nd(g);
  for (int r = 0; r < rows; ++r) {
    in.inv_t.push_back(r % 3 == 0 ? 0.0f : 1.0f / (0.3f + 0.4f * static_cast<float>(r % 4)));
    in.u01.push_back(r % 5 == 4 ? -1.0 : ud(g));
  }
  return in;
}

TEST_F(CudaSampleRows, LargeVocabularyMatchesHost) {
  expect_matches_host(random_rows(12, 128256, 128000, 64, 1, 3.0f), stream_);
  expect_matches_host(random_rows(7, 151936, 151665, 20, 2, 1.0f), stream_);
}

TEST_F(CudaSampleRows, SmallVocabularyAndFewerIdsThanCandidates) {
  expect_matches_host(random_rows(9, 300, 290, 64, 3, 2.0f), stream_);
  expect_matches_host(random_rows(4, 40, 37, 64, 4, 2.0f), stream_);
}

TEST_F(CudaSampleRows, TiesAreOrderedById) {
  // Logits on a coarse grid (many ties at the k-th value) and a row of equal logits (more
  // tied ids than the kernel buffers).
  Rows in = random_rows(6, 50000, 50000, 64, 5, 1.0f);
  for (float& x : in.logits) x = std::round(x * 4.0f) / 4.0f;
  std::fill(in.logits.begin(), in.logits.begin() + 50000, 0.5f);
  expect_matches_host(in, stream_);
}

TEST_F(CudaSampleRows, MaskedIdsAndFewListableIds) {
  // Rows of -inf but for a few ids in different chunks (a grammar or logit_bias mask), one row
  // with a single listable id, and a vocabulary that is a whole number of chunks.
  Rows in = random_rows(5, 4096, 4096, 64, 6, 2.0f);
  for (int r = 0; r < 3; ++r) {
    float* row = in.logits.data() + static_cast<size_t>(r) * in.vocab;
    for (int i = 0; i < in.vocab; ++i)
      if (i % 997 != r) row[i] = -INFINITY;
  }
  expect_matches_host(in, stream_);
  expect_matches_host(random_rows(6, 3000, 1, 8, 7, 2.0f), stream_);
}

}  // namespace
}  // namespace xq::cuda
