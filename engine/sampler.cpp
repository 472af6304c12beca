#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/parallel.h"

namespace xq {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Repetition (HF: divide positive logits, multiply negative ones) once per id seen in the prompt
// or the output, then presence and frequency (OpenAI: subtract per id generated / per
// occurrence in the output).
void apply_penalties(const SamplingParams& p, std::span<float> logits, std::span<const int> prompt,
                     std::span<const int> history) {
  const bool rep = p.repetition_penalty != 1.0f && p.repetition_penalty > 0.0f;
  const int n = static_cast<int>(logits.size());
  if (rep) {
    thread_local std::vector<uint8_t> seen;
    seen.assign(logits.size(), 0);
    for (std::span<const int> part : {prompt, history}) {
      for (int t : part) {
        if (t < 0 || t >= n || seen[t]) continue;
        seen[t] = 1;
        float& l = logits[t];
        l = l > 0.0f ? l / p.repetition_penalty : l * p.repetition_penalty;
      }
    }
  }
  if (p.presence_penalty == 0.0f && p.frequency_penalty == 0.0f) return;
  std::unordered_map<int, int> counts;
  for (int t : history) {
    if (t >= 0 && t < n) counts[t]++;
  }
  for (const auto& [t, c] : counts) logits[t] -= output_penalty(p, c);
}

// The first index of the largest value. The maximum comes first, over eight lanes (a loop that
// vectorizes; std::max_element does not), then its first occurrence.
int argmax(std::span<const float> x) {
  const size_t n = x.size();
  float lanes[8];
  std::fill(lanes, lanes + 8, -std::numeric_limits<float>::infinity());
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) lanes[j] = std::max(lanes[j], x[i + j]);
  }
  float mx = *std::max_element(lanes, lanes + 8);
  for (; i < n; ++i) mx = std::max(mx, x[i]);
  const auto at = std::find(x.begin(), x.end(), mx);
  if (at == x.end()) return static_cast<int>(std::max_element(x.begin(), x.end()) - x.begin());
  return static_cast<int>(at - x.begin());
}

// The token id whose cumulative probability (in id order) first passes u, skipping blocks of
// ids whose whole mass lies below it.
int walk_ids(const std::vector<float>& prob, size_t n, double u, int fallback) {
  constexpr size_t kBlock = 256;
  double cum = 0.0;
  for (size_t b = 0; b < n; b += kBlock) {
    const size_t e = std::min(n, b + kBlock);
    const double mass = sum_floats(prob.data() + b, e - b);
    if (cum + mass <= u) {
      cum += mass;
      continue;
    }
    for (size_t t = b; t < e; ++t) {
      cum += prob[t];
      if (u < cum && prob[t] > 0.0f) return static_cast<int>(t);
    }
  }
  for (size_t t = n; t-- > 0;) {  // rounding left u at the very end: the last possible token
    if (prob[t] > 0.0f) return static_cast<int>(t);
  }
  return fallback;
}

// Token ids by logit, best first; ties by id, so that the order is total.
struct ByLogit {
  std::span<const float> logits;
  bool operator()(int a, int b) const {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  }
};

// Candidates in ByLogit order, sorted only as far as they are read: top-p and min-p usually
// keep a short head of a 100k+ vocabulary, and sorting all of it cost ~90 ms per token at
// 262k. Each growth sorts the next slice of the unsorted rest, which holds no better token.
class SortedHead {
 public:
  SortedHead(std::vector<int>& ids, size_t sorted, ByLogit by) : ids_(ids), sorted_(sorted), by_(by) {}
  int at(size_t i) {
    if (i >= sorted_) {
      const size_t to = std::min(ids_.size(), std::max({i + 1, 2 * sorted_, size_t{64}}));
      std::partial_sort(ids_.begin() + static_cast<std::ptrdiff_t>(sorted_),
                        ids_.begin() + static_cast<std::ptrdiff_t>(to), ids_.end(), by_);
      sorted_ = to;
    }
    return ids_[i];
  }
  size_t size() const { return ids_.size(); }

 private:
  std::vector<int>& ids_;
  size_t sorted_;
  ByLogit by_;
};

}  // namespace

float output_penalty(const SamplingParams& p, int count) {
  return p.presence_penalty + p.frequency_penalty * static_cast<float>(count);
}

Sampler::Sampler(SamplingParams params, uint64_t fallback_seed)
    : p_(std::move(params)), rng_(p_.seed.value_or(fallback_seed)) {}

int Sampler::sample(std::span<float> logits, std::span<const int> history,
                    std::span<const int> prompt, std::span<const int> banned) {
  const int n = static_cast<int>(logits.size());
  apply_penalties(p_, logits, prompt, history);
  // Biases naming tokens outside the vocabulary are ignored (the server validates them).
  for (const auto& [t, b] : p_.logit_bias) {
    if (t >= 0 && t < n) logits[t] += b;
  }
  bool any_left = banned.empty();
  for (int t : banned) {
    if (t >= 0 && t < n) logits[t] = kNegInf;
  }
  if (!any_left) {  // a vocabulary of nothing but banned ids still draws something
    any_left = std::any_of(logits.begin(), logits.end(), [](float l) { return l > kNegInf; });
    if (!any_left) return banned.front() >= 0 && banned.front() < n ? banned.front() : 0;
  }
  return draw(logits);
}

int Sampler::sample(std::span<const float> logits, std::span<const int> history,
                    std::vector<float>& scratch, std::span<const int> prompt,
                    std::span<const int> banned) {
  if (!changes_row(history, prompt, banned)) return draw(logits);
  scratch.assign(logits.begin(), logits.end());
  return sample(std::span<float>(scratch), history, prompt, banned);
}

bool Sampler::changes_row(std::span<const int> history, std::span<const int> prompt,
                          std::span<const int> banned) const {
  const bool rep = p_.repetition_penalty != 1.0f && p_.repetition_penalty > 0.0f;
  const bool output_penalties = p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f;
  return !p_.logit_bias.empty() || !banned.empty() ||
         (rep && (!history.empty() || !prompt.empty())) || (output_penalties && !history.empty());
}

double Sampler::uniform() {
  if (planned_u_) {
    const double u = *planned_u_;
    planned_u_.reset();
    return u;
  }
  // A uniform double in [0, 1) from the top 53 bits: the same draw on every platform.
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

int Sampler::draw(std::span<const float> logits) {
  const int n = static_cast<int>(logits.size());
  if (p_.temperature <= 0.0f) return argmax(logits);

  // Softmax weights of logits / temperature over the candidates (top-k's, or all), relative to
  // the best one's (float; their sums in double); `prob` is indexed by token id. The scratch
  // stays with the thread: no allocation per token.
  thread_local std::vector<float> prob;
  thread_local std::vector<float> gathered;
  thread_local std::vector<int> ids;
  prob.resize(n);
  const ByLogit by{logits};
  size_t sorted = 0;
  if (p_.top_k > 0 && p_.top_k < n) {
    ids.resize(n);
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + p_.top_k, ids.end(), by);
    ids.resize(p_.top_k);
    sorted = ids.size();
  } else {
    ids.clear();
  }
  const bool all = ids.empty();
  const int best = all ? argmax(logits) : ids[0];
  const float inv_t = 1.0f / p_.temperature;
  const float mx = logits[best] * inv_t;
  double sum = 0.0;
  if (all) {
    sum = exp_shifted(logits.data(), logits.size(), inv_t, mx, prob.data());
  } else {
    gathered.resize(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) gathered[i] = logits[ids[i]];
    sum = exp_shifted(gathered.data(), gathered.size(), inv_t, mx, gathered.data());
    for (size_t i = 0; i < ids.size(); ++i) prob[ids[i]] = gathered[i];
  }
  if (!(sum > 0.0) || !std::isfinite(sum)) return best;
  const double scale = 1.0 / sum;
  const double u01 = uniform();

  if (p_.top_p >= 1.0f && p_.min_p <= 0.0f) {
    // No cut: draw by walking the candidates in any fixed order (token id when all are).
    const double u = u01 * sum;
    if (all) return walk_ids(prob, static_cast<size_t>(n), u, best);
    double cum = 0.0;
    for (int t : ids) {
      cum += prob[t];
      if (u < cum && prob[t] > 0.0f) return t;
    }
    return ids.back();
  }

  // min-p keeps tokens with at least min_p times the best one's probability (the best has
  // weight 1 before scaling); top-p the shortest best-first prefix whose mass reaches top_p.
  // Both keep a prefix of the sorted candidates, so min-p filters first and top-p cuts that.
  const float floor = p_.min_p > 0.0f ? p_.min_p : 0.0f;
  if (all) {
    for (int t = 0; t < n; ++t) {
      if (prob[t] >= floor && (floor > 0.0f || prob[t] > 0.0f)) ids.push_back(t);
    }
  } else if (floor > 0.0) {
    size_t keep = 0;
    while (keep < ids.size() && prob[ids[keep]] >= floor) ++keep;
    ids.resize(keep);
  }
  SortedHead head(ids, sorted, by);
  size_t keep = head.size();
  if (p_.top_p < 1.0f) {
    double cum = 0.0;
    for (size_t i = 0; i < head.size(); ++i) {
      cum += prob[head.at(i)] * scale;
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  keep = std::max<size_t>(keep, 1);  // the best token always survives
  double total = 0.0;
  for (size_t i = 0; i < keep; ++i) total += prob[head.at(i)];
  const double u = u01 * total;
  double cum = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    cum += prob[head.at(i)];
    if (u < cum) return head.at(i);
  }
  return head.at(keep - 1);
}

// The k best ids in ByLogit order, in one pass (k is at most 20 here: a sorted insert into
// the few kept beats sorting ids of the whole vocabulary).
std::vector<int> best_ids(std::span<const float> logits, int k) {
  const ByLogit by{logits};
  std::vector<int> top;
  top.reserve(k + 1);
  float floor = -std::numeric_limits<float>::infinity();  // the k-th best so far, once k are in
  for (int t = 0; t < static_cast<int>(logits.size()); ++t) {
    if (logits[t] < floor) continue;
    if (static_cast<int>(top.size()) == k && !by(t, top.back())) continue;
    top.insert(std::upper_bound(top.begin(), top.end(), t, by), t);
    if (static_cast<int>(top.size()) > k) top.pop_back();
    if (static_cast<int>(top.size()) == k) floor = logits[top.back()];
  }
  return top;
}

TokenLogprob token_logprob(std::span<const float> logits, int token, int top_n, size_t listable) {
  const int n = static_cast<int>(logits.size());
  const int listed = static_cast<int>(std::min(listable, logits.size()));
  const float mx = logits[argmax(logits)];
  thread_local std::vector<float> scratch;
  scratch.resize(n);
  const double lse = mx + std::log(exp_shifted(logits.data(), logits.size(), 1.0f, mx, scratch.data()));
  TokenLogprob out;
  out.token = token;
  out.logprob = token >= 0 && token < n ? static_cast<float>(logits[token] - lse) : kNegInf;
  if (top_n > 0) {
    for (int t : best_ids(logits.first(listed), std::min(top_n, listed))) {
      out.top.emplace_back(t, static_cast<float>(logits[t] - lse));
    }
  }
  return out;
}

void sample_batch(std::span<SampleTask> tasks, int threads) {
  if (tasks.empty()) return;
  if (threads <= 0) threads = hardware_threads();
  // A draw costs about 1 ns per vocabulary entry: chunks of less than ~65k entries (~65 us)
  // stay on the calling thread, where waking workers would cost as much as it saves (a small
  // vocabulary draws a whole step inline).
  const int vocab = std::max(1, static_cast<int>(tasks.front().logits.size()));
  const int min_chunk = std::max(1, 65536 / vocab);
  parallel_for(static_cast<int>(tasks.size()), threads, min_chunk, [&](int begin, int end) {
    thread_local std::vector<float> scratch;  // a row copy when penalties or bias change it
    for (int i = begin; i < end; ++i) {
      SampleTask& t = tasks[i];
      t.token = t.sampler->sample(t.logits, t.history, scratch, t.prompt, t.banned);
      if (t.logprobs >= 0) {
        const std::span<const float> all = t.full_row.empty() ? t.logits : t.full_row;
        t.logprob = token_logprob(all, t.token, t.logprobs, t.logits.size());
      }
    }
  });
}

}  // namespace xq

namespace xq {

namespace {

RowSummary summarize_unedited(std::span<const float> row, size_t listable, int k,
                              const RowDrawSpec& spec) {
  const size_t n = std::min(listable, row.size());
  RowSummary s;
  s.ids = best_ids(row.first(n), k);
  for (int t : s.ids) s.logits.push_back(row[t]);
  thread_local std::vector<float> scratch;
  scratch.resize(row.size());
  const float mx = row[argmax(row)];
  s.lse = mx + std::log(exp_shifted(row.data(), row.size(), 1.0f, mx, scratch.data()));
  if (spec.inv_temperature > 0.0f && !s.ids.empty()) {
    // As Sampler::draw over every listable id: the same weights, sum and walk.
    const float shift = row[s.ids[0]] * spec.inv_temperature;
    s.sum_t = exp_shifted(row.data(), n, spec.inv_temperature, shift, scratch.data());
    if (spec.u01 >= 0.0 && s.sum_t > 0.0 && std::isfinite(s.sum_t)) {
      s.drawn = walk_ids(scratch, n, spec.u01 * s.sum_t, s.ids[0]);
      s.drawn_logit = row[s.drawn];
    }
  }
  return s;
}

}  // namespace

RowSummary summarize_row(std::span<const float> row, size_t listable, int k,
                         const RowDrawSpec& spec) {
  if (!spec.edited) return summarize_unedited(row, listable, k, spec);
  std::vector<float> edited(row.begin(), row.end());
  apply_edits(edited, spec.edits);
  RowSummary s = summarize_unedited(edited, listable, k, spec);
  s.edited = true;
  for (const LogitEdit& e : spec.edits) s.unedited.emplace_back(e.id, row[e.id]);
  if (spec.raw_summary && !spec.edits.empty()) {  // else the summary is of the model's row
    const RowSummary raw = summarize_unedited(row, listable, k, RowDrawSpec{});
    s.has_raw = true;
    s.raw_ids = raw.ids;
    s.raw_logits = raw.logits;
    s.raw_lse = raw.lse;
  }
  return s;
}

}  // namespace xq
