// Tests of the sampler: greedy, penalties, bias, top-k/top-p/min-p, seeding, logprobs.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "engine/sampler.h"

namespace xq {
namespace {

SamplingParams greedy() {
  SamplingParams p;
  p.temperature = 0.0f;
  return p;
}

TEST(Sampler, GreedyPicksArgmax) {
  Sampler s(greedy(), 1);
  std::vector<float> l = {0.1f, 2.0f, -1.0f, 1.9f};
  EXPECT_EQ(s.sample(l, {}), 1);
}

TEST(Sampler, LogitBiasCanForceAndForbid) {
  SamplingParams p = greedy();
  p.logit_bias = {{1, -100.0f}, {2, 5.0f}, {99, 100.0f}};  // 99: outside, ignored
  Sampler s(p, 1);
  std::vector<float> l = {0.1f, 2.0f, -1.0f, 1.9f};
  EXPECT_EQ(s.sample(l, {}), 2);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  SamplingParams p = greedy();
  p.repetition_penalty = 2.0f;
  Sampler s(p, 1);
  std::vector<float> l = {3.0f, -1.0f, 2.0f};
  const int hist[] = {0, 1, 0};
  EXPECT_EQ(s.sample(l, hist), 2);
  EXPECT_FLOAT_EQ(l[0], 1.5f);
  EXPECT_FLOAT_EQ(l[1], -2.0f);
  EXPECT_FLOAT_EQ(l[2], 2.0f);
}

TEST(Sampler, PresenceAndFrequencyPenaltiesCountOccurrences) {
  SamplingParams p = greedy();
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  Sampler s(p, 1);
  std::vector<float> l = {3.0f, 2.0f, 0.0f};
  const int hist[] = {0, 0, 0, 1};
  s.sample(l, hist);
  EXPECT_FLOAT_EQ(l[0], 3.0f - 0.5f - 0.75f);
  EXPECT_FLOAT_EQ(l[1], 2.0f - 0.5f - 0.25f);
  EXPECT_FLOAT_EQ(l[2], 0.0f);
}

std::map<int, int> histogram(SamplingParams p, const std::vector<float>& logits, int draws) {
  Sampler s(p, 123);
  std::map<int, int> h;
  for (int i = 0; i < draws; ++i) {
    std::vector<float> l = logits;
    h[s.sample(l, {})]++;
  }
  return h;
}

TEST(Sampler, TemperatureSamplingFollowsTheSoftmax) {
  SamplingParams p;
  p.temperature = 1.0f;
  const std::vector<float> l = {0.0f, std::log(3.0f)};  // probabilities 1/4, 3/4
  auto h = histogram(p, l, 20000);
  EXPECT_NEAR(h[1] / 20000.0, 0.75, 0.015);
  p.temperature = 0.5f;  // 1:9
  h = histogram(p, l, 20000);
  EXPECT_NEAR(h[1] / 20000.0, 0.9, 0.01);
}

TEST(Sampler, TopKTopPAndMinPRestrictTheCandidates) {
  const std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  SamplingParams p;
  p.top_k = 2;
  auto h = histogram(p, l, 5000);
  EXPECT_EQ(h.count(2) + h.count(3), 0u);
  EXPECT_NEAR(h[0] / 5000.0, 0.5 / 0.8, 0.03);
  p = SamplingParams{};
  p.top_p = 0.85f;  // 0.5 + 0.3 + 0.15 reaches it: token 3 is cut
  h = histogram(p, l, 5000);
  EXPECT_EQ(h.count(3), 0u);
  EXPECT_GT(h[2], 0);
  p = SamplingParams{};
  p.min_p = 0.5f;  // keeps p >= 0.25: tokens 0 and 1
  h = histogram(p, l, 5000);
  EXPECT_EQ(h.count(2) + h.count(3), 0u);
  EXPECT_GT(h[1], 0);
  p = SamplingParams{};
  p.top_p = 0.01f;  // the best token always survives
  h = histogram(p, l, 100);
  EXPECT_EQ(h[0], 100);
}

TEST(Sampler, SameSeedSameTokensAndParamSeedBeatsFallback) {
  std::vector<float> base(50);
  for (int i = 0; i < 50; ++i) base[i] = std::sin(i * 1.7f);
  auto run = [&](SamplingParams p, uint64_t fallback) {
    Sampler s(p, fallback);
    std::vector<int> out;
    for (int i = 0; i < 30; ++i) {
      std::vector<float> l = base;
      out.push_back(s.sample(l, {}));
    }
    return out;
  };
  SamplingParams p;
  EXPECT_EQ(run(p, 7), run(p, 7));
  EXPECT_NE(run(p, 7), run(p, 8));
  p.seed = 42;
  EXPECT_EQ(run(p, 7), run(p, 8));
}

TEST(TokenLogprob, IsLogSoftmaxWithSortedTop) {
  const std::vector<float> l = {1.0f, 3.0f, 2.0f, 1000.0f - 1000.0f};
  double z = 0;
  for (float x : l) z += std::exp(x);
  const TokenLogprob lp = token_logprob(l, 2, 2);
  EXPECT_EQ(lp.token, 2);
  EXPECT_NEAR(lp.logprob, 2.0 - std::log(z), 1e-6);
  ASSERT_EQ(lp.top.size(), 2u);
  EXPECT_EQ(lp.top[0].first, 1);
  EXPECT_EQ(lp.top[1].first, 2);
  EXPECT_NEAR(lp.top[0].second, 3.0 - std::log(z), 1e-6);
  // Large logits do not overflow.
  const std::vector<float> big = {1e4f, 1e4f};
  EXPECT_NEAR(token_logprob(big, 0, 0).logprob, -std::log(2.0), 1e-6);
  EXPECT_TRUE(token_logprob(big, 0, 0).top.empty());
}

}  // namespace
}  // namespace xq
