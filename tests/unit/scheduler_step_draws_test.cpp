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

// One step's draws of every row, twice: by sample_batch over the whole rows (`want`) and by
// draw_from_summaries over summaries of the specs plan(r, sampler, banned) makes (`got`), each
// with its own samplers of `params`.
struct Round {
  std::vector<SampleTask> want, got;
  std::vector<int> copied;  // rows draw_from_summaries copied back
};
template <class Plan, class Banned>
Round draw_both(const std::vector<float>& logits, int vocab, int listable,
                const std::vector<SamplingParams>& params, uint64_t seed,
                std::span<const int> history, std::span<const int> prompt, Banned banned_of,
                int logprobs, std::vector<Sampler>& a, std::vector<Sampler>& b, Plan plan) {
  const int rows = static_cast<int>(params.size());
  for (int r = 0; r < rows; ++r) {
    a.emplace_back(params[r], seed + r);
    b.emplace_back(params[r], seed + r);
  }
  Round out{std::vector<SampleTask>(rows), std::vector<SampleTask>(rows), {}};
  std::vector<RowSummary> summaries(rows);
  std::vector<int> draw_of(rows);
  for (int r = 0; r < rows; ++r) {
    for (auto* t : {&out.want[r], &out.got[r]}) {
      t->history = history;
      t->prompt = prompt;
      t->banned = banned_of(r);
      t->logprobs = logprobs;
    }
    const std::span<const float> row(logits.data() + static_cast<size_t>(r) * vocab, vocab);
    out.want[r].sampler = &a[r];
    out.want[r].logits = row.first(listable);
    out.want[r].full_row = row;
    out.got[r].sampler = &b[r];
    summaries[r] =
        summarize_row(row, listable, kSummaryCandidates, plan(r, b[r], out.got[r].banned));
    draw_of[r] = r;
  }
  sample_batch(out.want, 1);
  HeldLogits model(vocab, logits);
  std::vector<float> fetched;
  draw_from_summaries(model, listable, summaries, draw_of, out.got, fetched, 1);
  out.copied = model.copied;
  return out;
}

void expect_same_draws(const Round& d, int logprobs) {
  for (size_t r = 0; r < d.got.size(); ++r) {
    const SampleTask &got = d.got[r], &want = d.want[r];
    ASSERT_EQ(got.token, want.token) << "row " << r << " logprobs " << logprobs;
    ASSERT_EQ(got.logprob.has_value(), logprobs >= 0);
    if (logprobs < 0) continue;
    EXPECT_NEAR(got.logprob->logprob, want.logprob->logprob, 1e-5f) << "row " << r;
    ASSERT_EQ(got.logprob->top.size(), want.logprob->top.size());
    for (size_t i = 0; i < got.logprob->top.size(); ++i)
      EXPECT_EQ(got.logprob->top[i].first, want.logprob->top[i].first);
  }
}

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
  params[5].presence_penalty = 1.5f;               // changes the row
  params[6].logit_bias = {{3, 5.0f}};              // likewise
  params[7].temperature = 0.0f;                    // greedy with banned ids
  params[8].temperature = 2.0f;                    // flat: a long top-p head
  params[8].top_p = 0.99f;
  const std::vector<int> history = {1, 2, 3, 2}, prompt = {7, 8}, banned = {0, 1, 2, 3, 4};
  auto banned_of = [&](int r) {
    return r == 7 ? std::span<const int>(banned) : std::span<const int>();
  };

  for (int logprobs : {-1, 0, 5}) {
    std::vector<Sampler> a, b;
    const Round d = draw_both(logits, vocab, listable, params, 100, history, prompt, banned_of,
                              logprobs, a, b, [&](int, Sampler& s, std::span<const int> ban) {
                                const bool changes = s.changes_row(history, prompt, ban);
                                size_t budget = kMaxStepEdits;
                                RowDrawSpec spec = edit ? plan_draw(s, history, prompt, ban,
                                                                    logprobs, listable, budget)
                                                        : s.plan(listable, changes);
                                EXPECT_EQ(spec.edited, edit && changes);
                                return spec;
                              });
    expect_same_draws(d, logprobs);
    // Row 8's head is longer than the candidates: it comes back whole, and so do the rows
    // that change unless they are edited (when logprobs are asked, a token outside the
    // candidates too).
    const std::vector<int>& c = d.copied;
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
  // Every row's best tokens are in the output (some twice) and the prompt, so that each
  // penalty moves the draw.
  std::vector<int> history, prompt;
  for (int r = 0; r < rows; ++r) {
    const std::span<const float> row(logits.data() + static_cast<size_t>(r) * vocab, listable);
    const std::vector<int> best = best_ids(row, 4);
    history.insert(history.end(), {best[0], best[1], best[0], best[2]});
    prompt.push_back(best[3]);
  }
  for (int i = 0; i < 30; ++i) prompt.push_back(static_cast<int>(g() % 900));
  const std::vector<int> banned = {history[0], history[1], 2};
  auto banned_of = [&](int r) {
    return r % 2 == 0 ? std::span<const int>(banned) : std::span<const int>();
  };
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
  }
  for (int logprobs : {-1, 3}) {
    std::vector<Sampler> a, b;
    size_t budget = kMaxStepEdits;  // one step's, shared by its rows
    const Round d = draw_both(logits, vocab, listable, params, 1000, history, prompt, banned_of,
                              logprobs, a, b, [&](int r, Sampler& s, std::span<const int> ban) {
                                RowDrawSpec spec =
                                    plan_draw(s, history, prompt, ban, logprobs, listable, budget);
                                EXPECT_TRUE(spec.edited) << "row " << r;
                                return spec;
                              });
    expect_same_draws(d, logprobs);
    EXPECT_LE(d.copied.size(), 2u) << "most edited draws decide from their summaries";
  }
}

}  // namespace
}  // namespace xq
