// Tests of the sampler: greedy, penalties, bias, top-k/top-p/min-p, seeding, logprobs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
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

// The kept set of top-k/top-p/min-p by the definition, with a full sort (what the sampler avoids
// on a large vocabulary) and the probabilities renormalized over it.
std::map<int, double> reference_kept(const SamplingParams& p, const std::vector<float>& l) {
  const int n = static_cast<int>(l.size());
  std::vector<int> ids(n);
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int a, int b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
  int keep = p.top_k > 0 ? std::min(p.top_k, n) : n;
  std::vector<double> prob(keep);
  double sum = 0;
  for (int i = 0; i < keep; ++i) sum += prob[i] = std::exp((l[ids[i]] - l[ids[0]]) / p.temperature);
  for (double& q : prob) q /= sum;
  double cum = 0;
  int cut = keep;
  for (int i = 0; i < keep && p.top_p < 1.0f; ++i) {
    if ((cum += prob[i]) >= p.top_p) {
      cut = i + 1;
      break;
    }
  }
  int min_cut = 1;
  while (min_cut < keep && prob[min_cut] >= p.min_p * prob[0]) ++min_cut;
  keep = std::min(cut, p.min_p > 0 ? min_cut : keep);
  double total = 0;
  for (int i = 0; i < keep; ++i) total += prob[i];
  std::map<int, double> out;
  for (int i = 0; i < keep; ++i) out[ids[i]] = prob[i] / total;
  return out;
}

// On a 2048-token vocabulary the sampler sorts only the head it needs (or nothing): every drawn
// token is in the reference's kept set, and the draws follow its distribution: the kept tokens,
// best first, cut into 8 groups of about equal reference mass, each drawn at its mass within
// 6 standard deviations of 20000 draws (a cut one group too short or long moves a group by
// far more).
TEST(Sampler, LargeVocabularyDrawsFollowTheReferenceKeptSet) {
  std::mt19937 gen(11);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> logits(2048);
  for (float& x : logits) x = normal(gen);
  struct Case { float temperature, top_p; int top_k; float min_p; };
  const Case cases[] = {{1.0f, 1.0f, 0, 0.0f},   {0.7f, 0.9f, 0, 0.0f},   {1.0f, 1.0f, 0, 0.05f},
                        {1.3f, 0.5f, 0, 0.02f},  {1.0f, 0.8f, 300, 0.0f}, {1.0f, 1.0f, 300, 0.1f}};
  for (const Case& c : cases) {
    SamplingParams p;
    p.temperature = c.temperature;
    p.top_p = c.top_p;
    p.top_k = c.top_k;
    p.min_p = c.min_p;
    const std::map<int, double> kept = reference_kept(p, logits);
    std::vector<std::pair<double, int>> ranked;  // (probability, token), best first
    for (const auto& [t, q] : kept) ranked.emplace_back(q, t);
    std::sort(ranked.rbegin(), ranked.rend());
    std::map<int, int> group_of;
    std::vector<double> mass;
    double cum = 0;
    for (const auto& [q, t] : ranked) {
      const int g = std::min(7, static_cast<int>(cum * 8));
      if (g >= static_cast<int>(mass.size())) mass.resize(g + 1, 0.0);
      group_of[t] = g;
      mass[g] += q;
      cum += q;
    }
    const int draws = 20000;
    const std::map<int, int> h = histogram(p, logits, draws);
    std::vector<double> seen(mass.size(), 0.0);
    for (const auto& [t, count] : h) {
      ASSERT_TRUE(kept.count(t)) << "token " << t << " outside the kept set of " << kept.size()
                                 << ", top_p " << c.top_p << " top_k " << c.top_k << " min_p "
                                 << c.min_p;
      seen[group_of[t]] += count / double(draws);
    }
    for (size_t g = 0; g < mass.size(); ++g) {
      const double sd = std::sqrt(mass[g] * (1 - mass[g]) / draws);
      EXPECT_NEAR(seen[g], mass[g], 6 * sd + 1e-9)
          << "group " << g << " of " << mass.size() << ", kept " << kept.size() << ", top_p "
          << c.top_p << " top_k " << c.top_k << " min_p " << c.min_p;
    }
  }
}

// On a larger vocabulary with many equal logits: the top list is the full sort's head (ties by
// id) and the logprobs are log_softmax in double.
TEST(TokenLogprob, TopMatchesAFullSortWithTies) {
  std::mt19937 gen(5);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> l(5000);
  for (float& x : l) x = std::round(normal(gen) * 4) / 4;  // many ties
  std::vector<int> ids(l.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int a, int b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
  double z = 0;
  for (float x : l) z += std::exp(static_cast<double>(x) - l[ids[0]]);
  const double lse = l[ids[0]] + std::log(z);
  for (int k : {1, 7, 20}) {
    const TokenLogprob lp = token_logprob(l, 123, k);
    EXPECT_NEAR(lp.logprob, l[123] - lse, 1e-5);
    ASSERT_EQ(lp.top.size(), static_cast<size_t>(k));
    for (int i = 0; i < k; ++i) {
      EXPECT_EQ(lp.top[i].first, ids[i]) << "rank " << i << " of " << k;
      EXPECT_NEAR(lp.top[i].second, l[ids[i]] - lse, 1e-5);
    }
  }
}

// sample_batch spreads the draws over threads; each task's sampler is its own, so the tokens
// and logprobs are those of a plain loop with samplers seeded alike.
TEST(SampleBatch, EqualsASequentialLoop) {
  const int rows = 48, vocab = 8192;  // 8 rows per chunk at this vocabulary: several threads
  std::mt19937 gen(9);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> logits(static_cast<size_t>(rows) * vocab);
  for (float& x : logits) x = normal(gen);
  const std::vector<int> history = {1, 2, 2, 3};
  auto params = [](int i) {
    SamplingParams p;
    p.temperature = i % 4 == 0 ? 0.0f : 0.8f;
    p.top_p = i % 3 == 0 ? 0.9f : 1.0f;
    p.repetition_penalty = i % 5 == 0 ? 1.3f : 1.0f;
    p.seed = 100 + i;
    return p;
  };
  std::vector<Sampler> batch_samplers, loop_samplers;
  for (int i = 0; i < rows; ++i) {
    batch_samplers.emplace_back(params(i), 0);
    loop_samplers.emplace_back(params(i), 0);
  }
  std::vector<SampleTask> tasks(rows);
  for (int i = 0; i < rows; ++i) {
    tasks[i].sampler = &batch_samplers[i];
    tasks[i].logits = std::span<const float>(logits.data() + static_cast<size_t>(i) * vocab, vocab);
    tasks[i].history = history;
    tasks[i].logprobs = i % 2 == 0 ? 3 : -1;
  }
  sample_batch(tasks, 4);
  for (int i = 0; i < rows; ++i) {
    std::vector<float> row(tasks[i].logits.begin(), tasks[i].logits.end());
    EXPECT_EQ(tasks[i].token, loop_samplers[i].sample(row, history)) << "row " << i;
    ASSERT_EQ(tasks[i].logprob.has_value(), i % 2 == 0);
    if (tasks[i].logprob) {
      const TokenLogprob want = token_logprob(tasks[i].logits, tasks[i].token, 3);
      EXPECT_EQ(tasks[i].logprob->logprob, want.logprob);
      EXPECT_EQ(tasks[i].logprob->top, want.top);
    }
  }
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
