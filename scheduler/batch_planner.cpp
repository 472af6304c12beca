#include "scheduler/batch_planner.h"

#include <algorithm>

namespace xq {

bool BatchPlanner::remove(Sequence* seq) {
  blocks_.release(seq->blocks);
  if (auto it = std::find(running_.begin(), running_.end(), seq); it != running_.end()) {
    running_.erase(it);
    return true;
  }
  if (auto it = std::find(waiting_.begin(), waiting_.end(), seq); it != waiting_.end()) {
    waiting_.erase(it);
    return true;
  }
  return false;
}

void BatchPlanner::preempt(Sequence* seq) {
  running_.erase(std::find(running_.begin(), running_.end(), seq));
  blocks_.release(seq->blocks);
  seq->num_cached = 0;  // recomputed from its tokens (prompt and what it generated) later
  if (seq->cache) seq->cache->truncate(0);
  ++seq->preemptions;
  ++preemptions_;
  waiting_.push_front(seq);
}

// Admission reserves blocks for every pending token, so a running prefill never needs more; a
// small watermark keeps room for the decodes of those already running.
bool BatchPlanner::try_admit(Sequence* seq) const {
  const int64_t watermark = running_.empty() ? 0 : std::max<int64_t>(1, blocks_.total() / 100);
  return blocks_.can_grow(seq->blocks, static_cast<int64_t>(seq->tokens.size()), watermark);
}

std::vector<PlannedChunk> BatchPlanner::plan() {
  std::vector<PlannedChunk> chunks;
  int budget = max_tokens_;
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence* s = running_[i];
    if (s->pending() != 1) continue;
    bool self_preempted = false;
    while (!blocks_.can_grow(s->blocks, s->num_cached + 1)) {
      Sequence* victim = running_.back();
      preempt(victim);
      if (victim == s) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;  // s was the newest: nothing after it is running
    blocks_.grow(s->blocks, s->num_cached + 1);
    chunks.push_back({s, 1});
    --budget;
  }
  for (Sequence* s : running_) {
    if (budget == 0) break;
    if (s->pending() > 1) {
      const int n = std::min(s->pending(), budget);
      chunks.push_back({s, n});
      budget -= n;
    }
  }
  while (!waiting_.empty() && budget > 0 && static_cast<int>(running_.size()) < max_num_seqs_) {
    Sequence* s = waiting_.front();
    if (!try_admit(s)) break;  // FCFS: nobody overtakes the head of the queue
    waiting_.pop_front();
    blocks_.grow(s->blocks, static_cast<int64_t>(s->tokens.size()));
    running_.push_back(s);
    const int n = std::min(s->pending(), budget);
    chunks.push_back({s, n});
    budget -= n;
  }
  return chunks;
}

}  // namespace xq
