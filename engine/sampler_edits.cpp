// A draw's row changes as a sparse list of edits (engine/logit_summary.h), so that a row that
// stays on the GPU is changed there and drawn from its summary. The list is built to repeat
// Sampler::sample's arithmetic exactly: repetition penalty, then presence and frequency, then
// bias, then bans, each a single float operation.
#include <algorithm>
#include <limits>
#include <unordered_map>

#include "engine/sampler.h"

namespace xq {

float edited_logit(float l, const LogitEdit& e) {
  if (e.ops & LogitEdit::kRep) l = l > 0.0f ? l / e.rep : l * e.rep;
  if (e.ops & LogitEdit::kSub) l -= e.sub;
  if (e.ops & LogitEdit::kAdd) l += e.add;
  if (e.ops & LogitEdit::kBan) l = -std::numeric_limits<float>::infinity();
  return l;
}

void apply_edits(std::span<float> row, std::span<const LogitEdit> edits) {
  for (const LogitEdit& e : edits) row[e.id] = edited_logit(row[e.id], e);
}

std::optional<std::vector<LogitEdit>> Sampler::row_edits(std::span<const int> history,
                                                         std::span<const int> prompt,
                                                         std::span<const int> banned,
                                                         size_t listable,
                                                         size_t max_edits) const {
  const int n = static_cast<int>(std::min<size_t>(listable, std::numeric_limits<int>::max()));
  std::vector<LogitEdit> edits;
  std::unordered_map<int, size_t> at;  // id -> its edit
  auto edit_of = [&](int t) -> LogitEdit& {
    const auto [it, fresh] = at.try_emplace(t, edits.size());
    if (fresh) edits.push_back(LogitEdit{t});
    return edits[it->second];
  };
  const bool rep = p_.repetition_penalty != 1.0f && p_.repetition_penalty > 0.0f;
  if (rep) {
    for (std::span<const int> part : {prompt, history}) {
      for (int t : part) {
        if (t < 0 || t >= n) continue;
        LogitEdit& e = edit_of(t);
        e.ops |= LogitEdit::kRep;
        e.rep = p_.repetition_penalty;
        if (edits.size() > max_edits) return std::nullopt;
      }
    }
  }
  if (p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f) {
    std::unordered_map<int, int> counts;
    for (int t : history) {
      if (t >= 0 && t < n) counts[t]++;
    }
    for (const auto& [t, c] : counts) {
      LogitEdit& e = edit_of(t);
      e.ops |= LogitEdit::kSub;
      e.sub = output_penalty(p_, c);
    }
  }
  for (const auto& [t, b] : p_.logit_bias) {
    if (t < 0 || t >= n) continue;  // ignored by the sampler too
    LogitEdit& e = edit_of(t);
    if (e.ops & LogitEdit::kAdd) return std::nullopt;
    e.ops |= LogitEdit::kAdd;
    e.add = b;
  }
  size_t banned_ids = 0;
  for (int t : banned) {
    if (t < 0 || t >= n) continue;
    LogitEdit& e = edit_of(t);
    banned_ids += (e.ops & LogitEdit::kBan) ? 0 : 1;
    e.ops |= LogitEdit::kBan;
  }
  // With every id banned the sampler draws the first banned one, which no summary tells.
  if (banned_ids > 0 && banned_ids >= static_cast<size_t>(n)) return std::nullopt;
  if (edits.size() > max_edits) return std::nullopt;
  std::sort(edits.begin(), edits.end(),
            [](const LogitEdit& a, const LogitEdit& b) { return a.id < b.id; });
  return edits;
}

}  // namespace xq
