// The CUDA row edits (kernels/cuda/edit_rows.cu) against the host: rows edited on the device
// with a sampler's row_edits equal, bit for bit, the rows Sampler::sample processes; their
// summaries equal summarize_row of the edited spec (engine/logit_summary.h); restoring gives the
// model's rows back. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/sampler.h"
#include "kernels/cuda/sample_ops.h"
#include "tests/unit/cuda_test_support.h"

namespace xq::cuda {
namespace {

using test::DeviceBuf;
using test::GpuTest;

using CudaEditRows = GpuTest;

// Penalties, bias and bans of a different mix per row.
SamplingParams row_params(int r, std::span<const int> history) {
  SamplingParams p;
  p.temperature = r % 3 == 0 ? 0.0f : 0.7f;
  p.repetition_penalty = r % 2 ? 1.25f : 1.0f;
  p.presence_penalty = r % 3 == 1 ? 0.9f : 0.0f;
  p.frequency_penalty = r % 4 == 2 ? 0.35f : 0.0f;
  if (r % 2 == 0) p.logit_bias = {{history[0], 7.5f}, {r, -20.0f}, {1000 + r, 3.0f}};
  return p;
}

void expect_edits_match_host(int rows, int vocab, int listable, unsigned seed,
                             cudaStream_t stream) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> raw(static_cast<size_t>(rows) * vocab);
  for (float& x : raw) x = nd(g);
  std::vector<int> history, prompt;
  for (int i = 0; i < 300; ++i) history.push_back(static_cast<int>(g() % 2000));
  for (int i = 0; i < 500; ++i) prompt.push_back(static_cast<int>(g() % listable));
  raw[history[0]] = 0.0f;  // the repetition penalty's boundary
  const std::vector<int> banned = {history[1], 2, listable - 1};

  std::vector<RowEdit> packed;
  std::vector<RowDrawSpec> specs(rows);
  std::vector<float> want = raw;  // the rows as the host sampler processes them
  const int K = 64;
  for (int r = 0; r < rows; ++r) {
    const SamplingParams p = row_params(r, history);
    const std::span<const int> ban =
        r % 3 == 2 ? std::span<const int>(banned) : std::span<const int>();
    Sampler host(p, 1);
    const auto edits = host.row_edits(history, prompt, ban, listable, kMaxStepEdits);
    ASSERT_TRUE(edits.has_value()) << "row " << r;
    host.sample(std::span<float>(want.data() + static_cast<size_t>(r) * vocab, listable), history,
                prompt, ban);
    for (const LogitEdit& e : *edits) packed.push_back({r, e.id, e.ops, e.rep, e.sub, e.add});
    specs[r].inv_temperature = r % 3 == 0 ? 0.0f : 1.0f / 0.7f;
    specs[r].u01 = r % 3 == 0 ? -1.0 : std::uniform_real_distribution<double>(0.0, 1.0)(g);
    specs[r].edits = *edits;
    specs[r].edited = true;
  }
  const int n = static_cast<int>(packed.size());
  DeviceBuf<float> logits(raw);
  DeviceBuf<RowEdit> dev_edits(packed);
  DeviceBuf<float> unedited(n);
  apply_row_edits(logits.get(), vocab, dev_edits.get(), n, unedited.get(), stream);
  const std::vector<float> got = logits.download();
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(float)), 0)
        << "row " << i / vocab << " id " << i % vocab << ": device " << got[i] << ", host "
        << want[i];
  const std::vector<float> kept = unedited.download();
  for (int i = 0; i < n; ++i)
    ASSERT_EQ(kept[i], raw[static_cast<size_t>(packed[i].row) * vocab + packed[i].id]);

  // The edited rows' summaries: the host's summary of the spec's edits.
  std::vector<float> inv_t;
  std::vector<double> u01;
  for (const RowDrawSpec& s : specs) {
    inv_t.push_back(s.inv_temperature);
    u01.push_back(s.u01);
  }
  DeviceBuf<float> d_inv_t(inv_t);
  DeviceBuf<double> d_u01(u01);
  DeviceBuf<int> ids(static_cast<size_t>(rows) * K), drawn(rows);
  DeviceBuf<float> vals(static_cast<size_t>(rows) * K), drawn_logit(rows);
  DeviceBuf<double> lse(rows), sum_t(rows);
  DeviceBuf<uint8_t> scratch(summary_scratch_bytes(rows, vocab, K));
  summarize_logit_rows(
      logits.get(), rows, vocab, listable, K, d_inv_t.get(), d_u01.get(), scratch.get(),
      {ids.get(), vals.get(), lse.get(), sum_t.get(), drawn.get(), drawn_logit.get()}, stream);
  const std::vector<int> g_ids = ids.download(), g_drawn = drawn.download();
  const std::vector<float> g_vals = vals.download();
  const std::vector<double> g_lse = lse.download();
  for (int r = 0; r < rows; ++r) {
    const std::span<const float> row(raw.data() + static_cast<size_t>(r) * vocab, vocab);
    const RowSummary s = summarize_row(row, listable, K, specs[r]);
    ASSERT_TRUE(s.edited);
    for (size_t i = 0; i < s.ids.size(); ++i) {
      ASSERT_EQ(g_ids[r * K + i], s.ids[i]) << "row " << r << " candidate " << i;
      ASSERT_EQ(g_vals[r * K + i], s.logits[i]) << "row " << r << " candidate " << i;
    }
    EXPECT_NEAR(g_lse[r], s.lse, 1e-5 * std::max(1.0, std::abs(s.lse))) << "row " << r;
    if (r % 3 != 2) continue;
    for (int t : {history[1], 2, listable - 1})
      EXPECT_NE(g_drawn[r], t) << "row " << r << " drew a banned id";
  }

  restore_row_edits(logits.get(), vocab, dev_edits.get(), n, unedited.get(), stream);
  const std::vector<float> back = logits.download();
  for (size_t i = 0; i < back.size(); ++i)
    ASSERT_EQ(std::memcmp(&back[i], &raw[i], sizeof(float)), 0) << "restored logit " << i;
}

TEST_F(CudaEditRows, LargeVocabularyEqualsTheHostSampler) {
  expect_edits_match_host(6, 128256, 128000, 1, stream_);
}

TEST_F(CudaEditRows, SmallVocabularyEqualsTheHostSampler) {
  expect_edits_match_host(7, 3000, 2990, 2, stream_);
}

}  // namespace
}  // namespace xq::cuda
