// Draws from row summaries (engine/logit_summary.h) against draws from the whole rows: a
// decided draw is the same token, an undecided one falls back to the row with the same
// uniform, and the random stream stays aligned across draws either way.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "engine/sampler.h"

namespace xq {
namespace {

int draw_whole(Sampler& s, const std::vector<float>& row, size_t listable) {
  std::vector<float> copy(row.begin(), row.begin() + static_cast<std::ptrdiff_t>(listable));
  return s.sample(std::span<float>(copy), {});
}

// Logits with a few peaked rows (short top-p heads) and flat ones (long heads).
std::vector<float> make_row(size_t n, unsigned seed, float spread) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, spread);
  std::vector<float> r(n);
  for (float& x : r) x = nd(g);
  if (seed % 7 == 0) r[seed % n] = r[(seed + 1) % n];  // ties
  return r;
}

struct Case {
  std::string name;
  SamplingParams p;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  auto add = [&](std::string name, float t, int k, float top_p, float min_p) {
    SamplingParams p;
    p.temperature = t;
    p.top_k = k;
    p.top_p = top_p;
    p.min_p = min_p;
    out.push_back({std::move(name), p});
  };
  add("greedy", 0.0f, 0, 1.0f, 0.0f);
  add("temperature", 0.8f, 0, 1.0f, 0.0f);
  add("top_k 5", 1.0f, 5, 1.0f, 0.0f);
  add("top_k 64", 1.3f, 64, 1.0f, 0.0f);
  add("top_k 200 (past the candidates)", 1.0f, 200, 1.0f, 0.0f);
  add("top_p 0.9", 0.7f, 0, 0.9f, 0.0f);
  add("top_p 0.5 top_k 40", 1.0f, 40, 0.5f, 0.0f);
  add("min_p 0.2", 1.0f, 0, 1.0f, 0.2f);
  add("min_p 0.01 top_p 0.95", 1.0f, 0, 0.95f, 0.01f);
  return out;
}

TEST(SamplerSummary, DrawsEqualWholeRowDraws) {
  const size_t vocab = 1000, listable = 990;  // a padded vocabulary
  for (const Case& c : cases()) {
    int decided = 0, total = 0;
    for (unsigned seed = 1; seed <= 6; ++seed) {
      Sampler whole(c.p, seed), summ(c.p, seed);
      for (int step = 0; step < 40; ++step) {
        const float spread = step % 2 ? 6.0f : 1.0f;
        const std::vector<float> row = make_row(vocab, seed * 1000 + step, spread);
        const int want = draw_whole(whole, row, listable);
        const RowDrawSpec spec = summ.plan(listable, false);
        const RowSummary s = summarize_row(row, listable, kSummaryCandidates, spec);
        std::optional<int> got = summ.sample_summary(s, listable);
        ++total;
        if (got) {
          ++decided;
        } else {
          got = draw_whole(summ, row, listable);
        }
        ASSERT_EQ(*got, want) << c.name << " seed " << seed << " step " << step;
      }
    }
    if (c.name.find("past the candidates") != std::string::npos) {
      EXPECT_EQ(decided, 0) << c.name;
    } else if (c.name.find("top_p 0.9") == std::string::npos && c.name != "min_p 0.2") {
      EXPECT_EQ(decided, total) << c.name;  // every draw fits the candidates
    } else {
      EXPECT_GT(decided, 0) << c.name;  // the peaked rows at least
    }
  }
}

TEST(SamplerSummary, LogprobsEqualWholeRowLogprobs) {
  const size_t vocab = 500, listable = 480;
  for (unsigned seed = 1; seed <= 20; ++seed) {
    const std::vector<float> row = make_row(vocab, seed, 3.0f);
    RowDrawSpec spec;
    spec.inv_temperature = 1.0f;
    spec.u01 = 0.37;
    const RowSummary s = summarize_row(row, listable, kSummaryCandidates, spec);
    for (int token : {s.ids[0], s.ids[5], s.drawn}) {
      const TokenLogprob want = token_logprob(row, token, 20, listable);
      const std::optional<TokenLogprob> got = summary_logprob(s, token, 20, listable);
      ASSERT_TRUE(got.has_value());
      EXPECT_NEAR(got->logprob, want.logprob, 1e-5f);
      ASSERT_EQ(got->top.size(), want.top.size());
      for (size_t i = 0; i < want.top.size(); ++i) {
        EXPECT_EQ(got->top[i].first, want.top[i].first);
        EXPECT_NEAR(got->top[i].second, want.top[i].second, 1e-5f);
      }
    }
    // A token outside the candidates and not the drawn one needs the row.
    int outside = -1;
    for (int t = 0; t < static_cast<int>(listable) && outside < 0; ++t) {
      if (std::find(s.ids.begin(), s.ids.end(), t) == s.ids.end() && t != s.drawn) outside = t;
    }
    EXPECT_FALSE(summary_logprob(s, outside, 0, listable).has_value());
  }
}

TEST(SamplerSummary, SmallVocabularyIsComplete) {
  // Fewer listable ids than candidates: every top-p / min-p head fits.
  SamplingParams p;
  p.temperature = 1.0f;
  p.min_p = 0.0001f;
  const std::vector<float> row = make_row(40, 3, 0.5f);
  Sampler whole(p, 9), summ(p, 9);
  for (int i = 0; i < 20; ++i) {
    const int want = draw_whole(whole, row, row.size());
    const RowSummary s = summarize_row(row, row.size(), kSummaryCandidates, summ.plan(40, false));
    const std::optional<int> got = summ.sample_summary(s, row.size());
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, want);
  }
}

}  // namespace
}  // namespace xq
