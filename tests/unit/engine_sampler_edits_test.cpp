// Sampler::row_edits (engine/sampler.h) against the row Sampler::sample processes in place:
// every penalty kind, bias and banned ids, tokens repeated in the prompt and the output, give
// the same row bit for bit; and the cases it declines (over the cap, an id biased twice, every
// id banned) fall back.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/sampler.h"

namespace xq {
namespace {

std::vector<float> random_row(int n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> row(n);
  for (float& x : row) x = nd(g);
  row[5] = 0.0f;  // the repetition penalty's boundary: neither divided nor multiplied away
  row[6] = -0.0f;
  return row;
}

// The row as sample() leaves it, and as the edits make it, compared bit for bit.
void expect_same_row(const SamplingParams& p, std::span<const int> history,
                     std::span<const int> prompt, std::span<const int> banned, size_t listable,
                     size_t vocab) {
  const std::vector<float> raw = random_row(static_cast<int>(vocab), 11);
  Sampler host(p, 1);
  std::vector<float> want(raw.begin(), raw.begin() + static_cast<std::ptrdiff_t>(listable));
  host.sample(std::span<float>(want), history, prompt, banned);

  const Sampler planner(p, 1);
  ASSERT_TRUE(planner.changes_row(history, prompt, banned));
  const auto edits = planner.row_edits(history, prompt, banned, listable, kMaxStepEdits);
  ASSERT_TRUE(edits.has_value());
  std::vector<int> ids;  // one edit per id: the kernel edits them all at once
  for (const LogitEdit& e : *edits) ids.push_back(e.id);
  std::sort(ids.begin(), ids.end());
  ASSERT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());
  std::vector<float> got = raw;
  apply_edits(got, *edits);
  for (size_t t = 0; t < listable; ++t)
    ASSERT_EQ(std::memcmp(&got[t], &want[t], sizeof(float)), 0)
        << "id " << t << ": edits give " << got[t] << ", the sampler " << want[t];
  for (size_t t = listable; t < vocab; ++t) ASSERT_EQ(got[t], raw[t]) << "padded id " << t;
}

const std::vector<int> kPrompt = {7, 8, 7, 5, 6, 300, 1};
const std::vector<int> kHistory = {1, 2, 3, 2, 2, 9, 7, 5, 6, 9, 450};

TEST(SamplerEdits, RepetitionPenaltyOverPromptAndOutput) {
  SamplingParams p;
  p.repetition_penalty = 1.3f;
  expect_same_row(p, kHistory, kPrompt, {}, 400, 410);
  expect_same_row(p, {}, kPrompt, {}, 400, 410);  // the prompt alone
  p.repetition_penalty = 0.7f;                    // below one: rewards repeats
  expect_same_row(p, kHistory, kPrompt, {}, 400, 410);
}

TEST(SamplerEdits, PresenceAndFrequencyCountTheOutputOnly) {
  SamplingParams p;
  p.presence_penalty = 0.6f;
  expect_same_row(p, kHistory, kPrompt, {}, 400, 410);
  p.presence_penalty = 0.0f;
  p.frequency_penalty = 0.37f;
  expect_same_row(p, kHistory, kPrompt, {}, 400, 410);
  p.presence_penalty = -1.1f;
  expect_same_row(p, kHistory, kPrompt, {}, 400, 410);
}

TEST(SamplerEdits, BiasBansAndEverythingTogether) {
  SamplingParams p;
  p.logit_bias = {{3, 5.5f}, {40, -100.0f}, {399, 0.25f}, {405, 9.0f}, {-2, 1.0f}};
  expect_same_row(p, {}, {}, {}, 400, 410);
  const std::vector<int> banned = {0, 2, 3, 1000};
  expect_same_row(p, {}, {}, banned, 400, 410);
  p.repetition_penalty = 1.2f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  expect_same_row(p, kHistory, kPrompt, banned, 400, 410);
}

TEST(SamplerEdits, DeclinesWhatEditsCannotSay) {
  SamplingParams p;
  p.repetition_penalty = 1.3f;
  const Sampler capped(p, 1);
  EXPECT_TRUE(capped.row_edits(kHistory, kPrompt, {}, 400, 9).has_value());  // 9 distinct ids
  EXPECT_FALSE(capped.row_edits(kHistory, kPrompt, {}, 400, 8).has_value());

  SamplingParams twice;
  twice.logit_bias = {{3, 0.1f}, {3, 0.2f}};
  EXPECT_FALSE(Sampler(twice, 1).row_edits({}, {}, {}, 400, kMaxStepEdits).has_value());

  const std::vector<int> all = {0, 1, 2, 2, 3};
  EXPECT_FALSE(Sampler(SamplingParams{}, 1).row_edits({}, {}, all, 4, kMaxStepEdits).has_value());
  EXPECT_TRUE(Sampler(SamplingParams{}, 1).row_edits({}, {}, all, 5, kMaxStepEdits).has_value());
  // The declined lists leave nothing behind for the next one.
  p.frequency_penalty = 0.5f;
  expect_same_row(p, kHistory, kPrompt, {}, 400, 410);
  const std::vector<int> nine = {9};
  const auto again = capped.row_edits({}, nine, {}, 400, kMaxStepEdits);
  ASSERT_TRUE(again.has_value());
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ((*again)[0].id, 9);
  EXPECT_EQ((*again)[0].ops, LogitEdit::kRep);
}

// summarize_row of an edited spec: the draw's fields of the edited row, the logprobs' of the
// model's row.
TEST(SamplerEdits, EditedSummaryKeepsTheUneditedRowForLogprobs) {
  const std::vector<float> raw = random_row(500, 3);
  SamplingParams p;
  p.logit_bias = {{10, 50.0f}};
  p.frequency_penalty = 2.0f;
  Sampler s(p, 1);
  RowDrawSpec spec;
  spec.edits = *s.row_edits(kHistory, {}, {}, 490, kMaxStepEdits);
  spec.edited = true;
  spec.raw_summary = true;
  const RowSummary sum = summarize_row(raw, 490, 8, spec);
  std::vector<float> edited = raw;
  apply_edits(edited, spec.edits);
  const RowSummary want_edited = summarize_row(edited, 490, 8, RowDrawSpec{});
  const RowSummary want_raw = summarize_row(raw, 490, 8, RowDrawSpec{});
  EXPECT_EQ(sum.ids, want_edited.ids);
  EXPECT_EQ(sum.ids[0], 10);
  EXPECT_EQ(sum.lse, want_edited.lse);
  ASSERT_TRUE(sum.has_raw);
  EXPECT_EQ(sum.raw_ids, want_raw.ids);
  EXPECT_EQ(sum.raw_lse, want_raw.lse);
  ASSERT_EQ(sum.unedited.size(), spec.edits.size());
  for (const auto& [id, l] : sum.unedited) EXPECT_EQ(l, raw[id]);

  const TokenLogprob want = token_logprob(raw, 10, 5, 490);
  const auto got = summary_logprob(sum, 10, 5, 490);
  ASSERT_TRUE(got.has_value());
  EXPECT_FLOAT_EQ(got->logprob, want.logprob);
  ASSERT_EQ(got->top.size(), want.top.size());
  for (size_t i = 0; i < want.top.size(); ++i) EXPECT_EQ(got->top[i].first, want.top[i].first);
}

// A change that touches no listable id (a bias past them): an edited spec with no edits, whose
// summary is the model row's own, logprobs included.
TEST(SamplerEdits, NoEditsLeaveTheSummaryAsItIs) {
  const std::vector<float> raw = random_row(500, 4);
  SamplingParams p;
  p.logit_bias = {{495, 30.0f}};
  const Sampler s(p, 1);
  ASSERT_TRUE(s.changes_row({}, {}, {}));
  RowDrawSpec spec;
  spec.edits = *s.row_edits({}, {}, {}, 490, kMaxStepEdits);
  EXPECT_TRUE(spec.edits.empty());
  spec.edited = true;
  spec.raw_summary = true;
  const RowSummary sum = summarize_row(raw, 490, 8, spec);
  EXPECT_TRUE(sum.edited);
  EXPECT_FALSE(sum.has_raw);
  EXPECT_EQ(sum.ids, summarize_row(raw, 490, 8, RowDrawSpec{}).ids);
  const auto got = summary_logprob(sum, sum.ids[0], 3, 490);
  ASSERT_TRUE(got.has_value());
  EXPECT_FLOAT_EQ(got->logprob, token_logprob(raw, sum.ids[0], 3, 490).logprob);
}

}  // namespace
}  // namespace xq
