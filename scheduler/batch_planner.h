// BatchPlanner: the scheduling policy of one engine step, in the manner of nano-vllm. Running
// sequences first (one decode token each, then the rest of chunked prefills), then waiting ones
// admitted FCFS while the token budget, max_num_seqs and free cache blocks allow. When a decode
// needs a block and none is free, the most recently admitted sequence is preempted: its blocks
// are freed and it goes back to the front of the queue, to be recomputed later.
#pragma once

#include <deque>
#include <vector>

#include "scheduler/block_manager.h"
#include "scheduler/sequence.h"

namespace xq {

struct PlannedChunk {
  Sequence* seq = nullptr;
  int n = 0;  // tokens of seq->tokens from seq->num_cached
};

class BatchPlanner {
 public:
  BatchPlanner(int max_num_seqs, int max_num_batched_tokens, BlockManager& blocks)
      : max_num_seqs_(max_num_seqs), max_tokens_(max_num_batched_tokens), blocks_(blocks) {}

  void add(Sequence* seq) { waiting_.push_back(seq); }
  // Removes a sequence wherever it is and frees its blocks; false if it was in neither queue.
  bool remove(Sequence* seq);
  // The work of the next step. Admitted sequences move from waiting to running.
  std::vector<PlannedChunk> plan();

  const std::deque<Sequence*>& waiting() const { return waiting_; }
  const std::vector<Sequence*>& running() const { return running_; }
  uint64_t preemptions() const { return preemptions_; }

 private:
  void preempt(Sequence* seq);
  bool try_admit(Sequence* seq) const;

  int max_num_seqs_;
  int max_tokens_;
  BlockManager& blocks_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // in admission order: the back is the newest
  uint64_t preemptions_ = 0;
};

}  // namespace xq
