#include "scheduler/batch_planner.h"

#include <algorithm>

namespace xq {

bool BatchPlanner::remove(Sequence* seq) {
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

std::vector<PlannedChunk> BatchPlanner::plan() {
  std::vector<PlannedChunk> chunks;
  int budget = max_tokens_;
  // Decodes first: one token each keeps every running stream moving; then the prefill chunks.
  for (Sequence* s : running_) {
    if (budget == 0) break;
    if (s->pending() == 1) {
      chunks.push_back({s, 1});
      --budget;
    }
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
    waiting_.pop_front();
    running_.push_back(s);
    const int n = std::min(s->pending(), budget);
    chunks.push_back({s, n});
    budget -= n;
  }
  return chunks;
}

}  // namespace xq
