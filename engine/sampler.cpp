#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>

namespace xq {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Penalties against the generated history: repetition (HF: divide positive logits, multiply
// negative ones), presence and frequency (OpenAI: subtract per seen token / per occurrence).
void apply_penalties(const SamplingParams& p, std::span<float> logits,
                     std::span<const int> history) {
  const bool rep = p.repetition_penalty != 1.0f && p.repetition_penalty > 0.0f;
  if (!rep && p.presence_penalty == 0.0f && p.frequency_penalty == 0.0f) return;
  std::unordered_map<int, int> counts;
  for (int t : history) {
    if (t >= 0 && t < static_cast<int>(logits.size())) counts[t]++;
  }
  for (const auto& [t, c] : counts) {
    float& l = logits[t];
    if (rep) l = l > 0.0f ? l / p.repetition_penalty : l * p.repetition_penalty;
    l -= p.presence_penalty + p.frequency_penalty * static_cast<float>(c);
  }
}

int argmax(std::span<const float> x) {
  return static_cast<int>(std::max_element(x.begin(), x.end()) - x.begin());
}

}  // namespace

Sampler::Sampler(SamplingParams params, uint64_t fallback_seed)
    : p_(std::move(params)), rng_(p_.seed.value_or(fallback_seed)) {}

int Sampler::sample(std::span<float> logits, std::span<const int> history) {
  const int n = static_cast<int>(logits.size());
  apply_penalties(p_, logits, history);
  // Biases naming tokens outside the vocabulary are ignored (the server validates them).
  for (const auto& [t, b] : p_.logit_bias) {
    if (t >= 0 && t < n) logits[t] += b;
  }
  if (p_.temperature <= 0.0f) return argmax(logits);

  // Candidates sorted by logit, best first; top-k cuts the list.
  std::vector<int> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  int keep = n;
  if (p_.top_k > 0 && p_.top_k < n) keep = p_.top_k;
  std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), [&](int a, int b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  idx.resize(keep);

  // Softmax of logits / temperature over the candidates, in double.
  std::vector<double> prob(keep);
  const double mx = logits[idx[0]] / static_cast<double>(p_.temperature);
  double sum = 0.0;
  for (int i = 0; i < keep; ++i) {
    prob[i] = logits[idx[i]] == kNegInf
                  ? 0.0
                  : std::exp(logits[idx[i]] / static_cast<double>(p_.temperature) - mx);
    sum += prob[i];
  }
  for (double& q : prob) q /= sum;

  // top-p: the smallest prefix whose mass reaches top_p; min-p: drop tokens below min_p times
  // the best one's probability. The best token always survives.
  if (p_.top_p < 1.0f) {
    double cum = 0.0;
    int cut = keep;
    for (int i = 0; i < keep; ++i) {
      cum += prob[i];
      if (cum >= p_.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
  }
  if (p_.min_p > 0.0f) {
    const double floor = p_.min_p * prob[0];
    int cut = 1;
    while (cut < keep && prob[cut] >= floor) ++cut;
    keep = cut;
  }

  double total = 0.0;
  for (int i = 0; i < keep; ++i) total += prob[i];
  // A uniform double in [0, 1) from the top 53 bits: the same draw on every platform.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * total;
  double cum = 0.0;
  for (int i = 0; i < keep; ++i) {
    cum += prob[i];
    if (u < cum) return idx[i];
  }
  return idx[keep - 1];
}

TokenLogprob token_logprob(std::span<const float> logits, int token, int top_n) {
  const int n = static_cast<int>(logits.size());
  double mx = -std::numeric_limits<double>::infinity();
  for (float l : logits) mx = std::max(mx, static_cast<double>(l));
  double sum = 0.0;
  for (float l : logits) sum += std::exp(l - mx);
  const double lse = mx + std::log(sum);
  TokenLogprob out;
  out.token = token;
  out.logprob = token >= 0 && token < n ? static_cast<float>(logits[token] - lse) : kNegInf;
  if (top_n > 0) {
    const int k = std::min(top_n, n);
    std::vector<int> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (int i = 0; i < k; ++i) {
      out.top.emplace_back(idx[i], static_cast<float>(logits[idx[i]] - lse));
    }
  }
  return out;
}

}  // namespace xq
