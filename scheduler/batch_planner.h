// BatchPlanner: the scheduling policy of one engine step. Running sequences first (decode tokens
// and the rest of chunked prefills), then waiting ones admitted FCFS, under the sequence and token
// budgets. Knows nothing of models or HTTP.
#pragma once

#include <deque>
#include <vector>

#include "scheduler/sequence.h"

namespace xq {

struct PlannedChunk {
  Sequence* seq = nullptr;
  int n = 0;  // tokens of seq->tokens from seq->num_cached
};

class BatchPlanner {
 public:
  BatchPlanner(int max_num_seqs, int max_num_batched_tokens)
      : max_num_seqs_(max_num_seqs), max_tokens_(max_num_batched_tokens) {}

  void add(Sequence* seq) { waiting_.push_back(seq); }
  // Removes a sequence wherever it is; returns false if it was in neither queue.
  bool remove(Sequence* seq);
  // The work of the next step. Admitted sequences move from waiting to running.
  std::vector<PlannedChunk> plan();

  const std::deque<Sequence*>& waiting() const { return waiting_; }
  const std::vector<Sequence*>& running() const { return running_; }

 private:
  int max_num_seqs_;
  int max_tokens_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;
};

}  // namespace xq
