// draw_from_summaries (scheduler/step_draws.h) against sample_batch over the whole rows: every
// kind of draw (greedy, temperature, top-k/p, min-p, penalties, bias, banned ids, logprobs) gives
// the same tokens and logprobs, whether its summary decides it or its row is copied back, and
// whether a penalized or biased row is edited where it lies (plan_draw) or copied back.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <stdexcept>
#include <vector>

#include "scheduler/step_draws.h"

namespace xq {
namespace {

// A step's logits held as on a device: summarized with the host reference, rows copied on
// request (the model's side of the interface, without layers).
class HeldLogits : public Model {
 public:
  HeldLogits(int vocab, std::vector<float> rows) : rows_(std::move(rows)) {
    cfg_.vocab_size = vocab;
  }
  const ModelConfig& config() const override { return cfg_; }
  const CacheFormat& cache_format() const override { throw std::logic_error("no cache"); }
  void forward(std::span<const SeqInput>, std::vector<float>&) override {}
  size_t weight_bytes() const override { return 0; }
  bool summarizes_logits() const override { return true; }
  void copy_logit_rows(std::span<const int> rows, std::vector<float>& out) override {
    out.clear();
    for (int r : rows) {
      const auto* p = rows_.data() + static_cast<size_t>(r) * cfg_.vocab_size;
      out.insert(out.end(), p, p + cfg_.vocab_size);
      copied.push_back(r);
    }
  }
  std::vector<int> copied;

 private:
  ModelConfig cfg_;
  std::vector<float> rows_;
};

// Rows 5, 6, 7 change before the draw: edited on the model's side (`edit`) or copied back.
void expect_equal_whole_row_draws(bool edit) {
  const int vocab = 700, listable = 690, rows = 9;
  std::mt19937 g(5);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> logits(static_cast<size_t>(rows) * vocab);
  for (float& x : logits) x = nd(g);
  std::vector<SamplingParams> params(rows);
  params[0].temperature = 0.0f;                    // greedy
  params[1].temperature = 0.8f;                    // the whole vocabulary
  params[2].top_k = 10;                            // top-k
  params[3].top_p = 0.9f;                          // top-p
  params[4].min_p = 0.3f;                          // min-p
  params[5].presence_penalty = 1.5f;               // changes the row: copied back
  params[6].logit_bias = {{3, 5.0f}};              // likewise
  params[7].temperature = 0.0f;                    // greedy with banned ids: copied back
  params[8].temperature = 2.0f;                    // flat: a long top-p head
  params[8].top_p = 0.99f;
  const std::vector<int> history = {1, 2, 3, 2}, prompt = {7, 8}, banned = {0, 1, 2, 3, 4};

  for (int logprobs : {-1, 0, 5}) {
    std::vector<Sampler> a, b;
    for (int r = 0; r < rows; ++r) {
      a.emplace_back(params[r], 100 + r);
      b.emplace_back(params[r], 100 + r);
    }
    std::vector<SampleTask> want(rows), got(rows);
    std::vector<RowSummary> summaries(rows);
    std::vector<int> draw_of(rows);
    for (int r = 0; r < rows; ++r) {
      for (auto* t : {&want[r], &got[r]}) {
        t->history = history;
        t->prompt = prompt;
        if (r == 7) t->banned = banned;
        t->logprobs = logprobs;
      }
      const std::span<const float> row(logits.data() + static_cast<size_t>(r) * vocab, vocab);
      want[r].sampler = &a[r];
      want[r].logits = row.first(listable);
      want[r].full_row = row;
      got[r].sampler = &b[r];
      const bool changes = b[r].changes_row(history, prompt, got[r].banned);
      size_t budget = kMaxStepEdits;
      const RowDrawSpec spec =
          edit ? plan_draw(b[r], history, prompt, got[r].banned, logprobs, listable, budget)
               : b[r].plan(listable, changes);
      ASSERT_EQ(spec.edited, edit && changes);
      summaries[r] = summarize_row(row, listable, kSummaryCandidates, spec);
      draw_of[r] = r;
    }
    sample_batch(want, 1);
    HeldLogits model(vocab, logits);
    std::vector<float> fetched;
    draw_from_summaries(model, listable, summaries, draw_of, got, fetched, 1);
    for (int r = 0; r < rows; ++r) {
      ASSERT_EQ(got[r].token, want[r].token) << "row " << r << " logprobs " << logprobs;
      ASSERT_EQ(got[r].logprob.has_value(), logprobs >= 0);
      if (logprobs < 0) continue;
      EXPECT_NEAR(got[r].logprob->logprob, want[r].logprob->logprob, 1e-5f) << "row " << r;
      ASSERT_EQ(got[r].logprob->top.size(), want[r].logprob->top.size());
      for (size_t i = 0; i < got[r].logprob->top.size(); ++i)
        EXPECT_EQ(got[r].logprob->top[i].first, want[r].logprob->top[i].first);
    }
    // Row 8's head is longer than the candidates: it comes back whole, and so do the rows
    // that change unless they are edited (when logprobs are asked, a token outside the
    // candidates too).
    const std::vector<int>& c = model.copied;
    EXPECT_EQ(std::count(c.begin(), c.end(), 8), 1);
    for (int r : {5, 6, 7})
      EXPECT_EQ(std::count(c.begin(), c.end(), r), edit ? 0 : 1) << "row " << r;
    EXPECT_LE(c.size(), edit ? 2u : 6u);
  }
}

TEST(SummaryDraws, EqualWholeRowDraws) { expect_equal_whole_row_draws(false); }

TEST(SummaryDraws, EditedRowsDrawFromTheirSummaries) { expect_equal_whole_row_draws(true); }

// Penalized, biased and banned draws of every kind, edited: still the whole row's tokens.
TEST(SummaryDraws, EditedDrawsOfEveryKind) {
  const int vocab = 900, listable = 880, rows = 12;
  std::mt19937 g(9);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<float> logits(static_cast<size_t>(rows) * vocab);
  for (float& x : logits) x = nd(g);
  std::vector<int> history, prompt;
  for (int i = 0; i < 40; ++i) history.push_back(static_cast<int>(g() % 60));
  for (int i = 0; i < 30; ++i) prompt.push_back(static_cast<int>(g() % 900));
  const std::vector<int> banned = {history[0], history[1], 2};
  for (int logprobs : {-1, 3}) {
    std::vector<SamplingParams> params(rows);
    for (int r = 0; r < rows; ++r) {
      SamplingParams& p = params[r];
      p.temperature = r % 4 == 0 ? 0.0f : 0.5f + 0.25f * static_cast<float>(r % 3);
      if (r % 3 == 1) p.top_k = 20;
      if (r % 5 == 2) p.top_p = 0.8f;
      if (r % 6 == 5) p.min_p = 0.1f;
      p.repetition_penalty = r % 2 ? 1.3f : 1.0f;
      p.presence_penalty = r % 3 == 0 ? 0.8f : 0.0f;
      p.frequency_penalty = r % 4 == 1 ? 0.4f : 0.0f;
      if (r % 4 == 3) p.logit_bias = {{history[2], 4.0f}, {prompt[0], -3.0f}, {899, 100.0f}};
      p.seed = 1000 + r;
    }
    std::vector<Sampler> a, b;
    for (int r = 0; r < rows; ++r) {
      a.emplace_back(params[r], 0);
      b.emplace_back(params[r], 0);
    }
    std::vector<SampleTask> want(rows), got(rows);
    std::vector<RowSummary> summaries(rows);
    std::vector<int> draw_of(rows);
    size_t budget = kMaxStepEdits;
    for (int r = 0; r < rows; ++r) {
      for (auto* t : {&want[r], &got[r]}) {
        t->history = history;
        t->prompt = prompt;
        if (r % 2 == 0) t->banned = banned;
        t->logprobs = logprobs;
      }
      const std::span<const float> row(logits.data() + static_cast<size_t>(r) * vocab, vocab);
      want[r].sampler = &a[r];
      want[r].logits = row.first(listable);
      want[r].full_row = row;
      got[r].sampler = &b[r];
      const RowDrawSpec spec =
          plan_draw(b[r], history, prompt, got[r].banned, logprobs, listable, budget);
      ASSERT_TRUE(spec.edited) << "row " << r;
      summaries[r] = summarize_row(row, listable, kSummaryCandidates, spec);
      draw_of[r] = r;
    }
    sample_batch(want, 1);
    HeldLogits model(vocab, logits);
    std::vector<float> fetched;
    draw_from_summaries(model, listable, summaries, draw_of, got, fetched, 1);
    for (int r = 0; r < rows; ++r) {
      ASSERT_EQ(got[r].token, want[r].token) << "row " << r << " logprobs " << logprobs;
      if (logprobs < 0) continue;
      ASSERT_TRUE(got[r].logprob.has_value());
      EXPECT_NEAR(got[r].logprob->logprob, want[r].logprob->logprob, 1e-5f) << "row " << r;
      ASSERT_EQ(got[r].logprob->top.size(), want[r].logprob->top.size());
      for (size_t i = 0; i < got[r].logprob->top.size(); ++i)
        EXPECT_EQ(got[r].logprob->top[i].first, want[r].logprob->top[i].first);
    }
    EXPECT_LE(model.copied.size(), 2u) << "most edited draws decide from their summaries";
  }
}

}  // namespace
}  // namespace xq
