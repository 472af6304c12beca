// Draws from a row's summary (engine/logit_summary.h) with Sampler::draw's arithmetic on the
// candidates, so that a decided draw is the token the whole row would have given.
#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/sampler.h"
#include "kernels/cpu/ops.h"

namespace xq {

RowDrawSpec Sampler::plan(size_t listable, bool changes) {
  RowDrawSpec spec;
  if (p_.temperature <= 0.0f) return spec;
  planned_u_.reset();
  planned_u_ = uniform();
  spec.inv_temperature = 1.0f / p_.temperature;
  const bool all = p_.top_k <= 0 || static_cast<size_t>(p_.top_k) >= listable;
  if (!changes && all && p_.top_p >= 1.0f && p_.min_p <= 0.0f) spec.u01 = *planned_u_;
  return spec;
}

std::optional<int> Sampler::sample_summary(const RowSummary& s, size_t listable) {
  if (s.ids.empty()) return std::nullopt;
  const int best = s.ids[0];
  if (p_.temperature <= 0.0f) return best;
  if (!planned_u_) return std::nullopt;
  const bool all = p_.top_k <= 0 || static_cast<size_t>(p_.top_k) >= listable;
  const bool cut = p_.top_p < 1.0f || p_.min_p > 0.0f;
  // Every listable id is a candidate: the summary holds them all.
  const bool complete = s.ids.size() >= listable;
  if (all && !cut) {
    if (s.drawn < 0) return std::nullopt;
    planned_u_.reset();
    return s.drawn;
  }
  if (!all && static_cast<size_t>(p_.top_k) > s.ids.size()) return std::nullopt;
  const size_t cands = all ? s.ids.size() : static_cast<size_t>(p_.top_k);

  const float inv_t = 1.0f / p_.temperature;
  const float mx = s.logits[0] * inv_t;
  thread_local std::vector<float> prob;
  prob.resize(cands);
  const double cand_sum = exp_shifted(s.logits.data(), cands, inv_t, mx, prob.data());
  const double sum = all ? s.sum_t : cand_sum;
  if (!(sum > 0.0) || !std::isfinite(sum)) {
    planned_u_.reset();
    return best;
  }
  const double scale = 1.0 / sum;
  const float floor = p_.min_p > 0.0f ? p_.min_p : 0.0f;
  // min-p keeps a best-first prefix of the candidates; where all of them pass and more ids
  // exist, the prefix may go on past the summary.
  size_t prefix = 0;
  auto kept = [&](float w) { return floor > 0.0f ? w >= floor : (!all || w > 0.0f); };
  while (prefix < cands && kept(prob[prefix])) ++prefix;
  const bool prefix_open = all && prefix == cands && !complete;
  size_t keep = prefix;
  bool decided = !prefix_open;
  if (p_.top_p < 1.0f) {
    double cum = 0.0;
    for (size_t i = 0; i < prefix; ++i) {
      cum += prob[i] * scale;
      if (cum >= p_.top_p) {
        keep = i + 1;
        decided = true;
        break;
      }
    }
  }
  if (!decided) return std::nullopt;
  keep = std::max<size_t>(keep, 1);
  double total = 0.0;
  for (size_t i = 0; i < keep; ++i) total += prob[i];
  const double u = uniform() * total;
  double cum = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    cum += prob[i];
    if (u < cum) return s.ids[i];
  }
  return s.ids[keep - 1];
}

namespace {

// An edited row's logprobs, which are of the model's row (as sample_batch's): its top from the
// raw summary; the token's logit from its edit's record where it was edited, else from any
// candidate list that holds it (the edits left it alone).
std::optional<TokenLogprob> unedited_logprob(const RowSummary& s, int token, int top_n,
                                             size_t listable) {
  if (!s.has_raw) return std::nullopt;
  const size_t want = top_n > 0 ? std::min<size_t>(static_cast<size_t>(top_n), listable) : 0;
  if (want > s.raw_ids.size()) return std::nullopt;
  std::optional<float> logit;
  for (const auto& [id, l] : s.unedited) {
    if (id == token) logit = l;
  }
  auto find_in = [&](const std::vector<int>& ids, const std::vector<float>& logits) {
    const auto at = std::find(ids.begin(), ids.end(), token);
    if (!logit && at != ids.end()) logit = logits[at - ids.begin()];
  };
  find_in(s.raw_ids, s.raw_logits);
  find_in(s.ids, s.logits);
  if (!logit && token == s.drawn && token >= 0) logit = s.drawn_logit;
  if (!logit) return std::nullopt;
  TokenLogprob out;
  out.token = token;
  out.logprob = static_cast<float>(*logit - s.raw_lse);
  for (size_t i = 0; i < want; ++i)
    out.top.emplace_back(s.raw_ids[i], static_cast<float>(s.raw_logits[i] - s.raw_lse));
  return out;
}

}  // namespace

std::optional<TokenLogprob> summary_logprob(const RowSummary& s, int token, int top_n,
                                            size_t listable) {
  if (s.edited && !s.unedited.empty()) return unedited_logprob(s, token, top_n, listable);
  const size_t want = top_n > 0 ? std::min<size_t>(static_cast<size_t>(top_n), listable) : 0;
  if (want > s.ids.size()) return std::nullopt;
  TokenLogprob out;
  out.token = token;
  const auto at = std::find(s.ids.begin(), s.ids.end(), token);
  if (at != s.ids.end()) {
    out.logprob = static_cast<float>(s.logits[at - s.ids.begin()] - s.lse);
  } else if (token == s.drawn && token >= 0) {
    out.logprob = static_cast<float>(s.drawn_logit - s.lse);
  } else {
    return std::nullopt;
  }
  for (size_t i = 0; i < want; ++i)
    out.top.emplace_back(s.ids[i], static_cast<float>(s.logits[i] - s.lse));
  return out;
}

}  // namespace xq
