// A draw's row changes as a sparse list of edits (engine/logit_summary.h), so that a row that
// stays on the GPU is changed there and drawn from its summary. The list is built to repeat
// Sampler::sample's arithmetic exactly: repetition penalty, then presence and frequency, then
// bias, then bans, each a single float operation.
#include <algorithm>
#include <limits>

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

const std::vector<int>& Sampler::prompt_ids(std::span<const int> prompt, int n) const {
  uint64_t hash = 1469598103934665603ull;  // FNV-1a over the ids: a pass, no allocation
  for (int t : prompt) hash = (hash ^ static_cast<uint32_t>(t)) * 1099511628211ull;
  PromptIds& c = prompt_ids_;
  if (c.n == n && c.len == prompt.size() && c.hash == hash) return c.ids;
  c.ids.clear();
  for (int t : prompt) {
    if (t >= 0 && t < n) c.ids.push_back(t);
  }
  std::sort(c.ids.begin(), c.ids.end());
  c.ids.erase(std::unique(c.ids.begin(), c.ids.end()), c.ids.end());
  c.n = n;
  c.len = prompt.size();
  c.hash = hash;
  return c.ids;
}

std::optional<std::vector<LogitEdit>> Sampler::row_edits(std::span<const int> history,
                                                         std::span<const int> prompt,
                                                         std::span<const int> banned,
                                                         size_t listable, size_t max_edits) const {
  const int n = static_cast<int>(std::min<size_t>(listable, std::numeric_limits<int>::max()));
  const bool rep = p_.repetition_penalty != 1.0f && p_.repetition_penalty > 0.0f;
  // Under a repetition penalty the prompt's ids come first, edit i for pids[i]; the other ids'
  // edits are found through `at`: id -> 1 + the edit's index (0: none yet), an array kept by
  // the thread (a step's lists are built on one thread, over prompts of thousands of tokens),
  // of which only the entries set are cleared again.
  static const std::vector<int> kNone;
  const std::vector<int>& pids = rep ? prompt_ids(prompt, n) : kNone;
  if (pids.size() > max_edits) return std::nullopt;
  std::vector<LogitEdit> edits;
  edits.reserve(pids.size() + history.size());
  for (int t : pids) edits.push_back(LogitEdit{t, LogitEdit::kRep, p_.repetition_penalty});
  thread_local std::vector<uint32_t> at;
  if (at.size() < static_cast<size_t>(n)) at.resize(n, 0);
  struct Clear {  // on every return, before `edits` may be moved out
    std::vector<LogitEdit>* edits;
    size_t from;
    void now() {
      if (edits)
        for (size_t i = from; i < edits->size(); ++i) at[(*edits)[i].id] = 0;
      edits = nullptr;
    }
    ~Clear() { now(); }
  } clear{&edits, pids.size()};
  auto index_of = [&](int t) -> size_t {
    const auto it = std::lower_bound(pids.begin(), pids.end(), t);
    if (it != pids.end() && *it == t) return static_cast<size_t>(it - pids.begin());
    if (at[t] == 0) {
      edits.push_back(LogitEdit{t});
      at[t] = static_cast<uint32_t>(edits.size());
    }
    return at[t] - 1;
  };
  auto edit_of = [&](int t) -> LogitEdit& { return edits[index_of(t)]; };
  if (rep) {
    for (int t : history) {
      if (t < 0 || t >= n) continue;
      LogitEdit& e = edit_of(t);
      e.ops |= LogitEdit::kRep;
      e.rep = p_.repetition_penalty;
      if (edits.size() > max_edits) return std::nullopt;
    }
  }
  if (p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f) {
    std::vector<int> count;  // per edit: the id's occurrences in the output
    for (int t : history) {
      if (t < 0 || t >= n) continue;
      const size_t i = index_of(t);
      edits[i].ops |= LogitEdit::kSub;
      if (count.size() <= i) count.resize(i + 1, 0);
      ++count[i];
    }
    for (size_t i = 0; i < count.size(); ++i) {
      if (count[i] > 0) edits[i].sub = output_penalty(p_, count[i]);
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
  clear.now();
  return edits;
}

}  // namespace xq
