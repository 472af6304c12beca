// What a draw needs of a row of logits that stays on its device: the k best ids with their
// logits, the row's log-sum-exp (for logprobs), the softmax normalizer at the draw's temperature,
// and, for a draw from the whole vocabulary, the token it lands on. A 32-row step of a 128k
// vocabulary is 16 MiB of fp32 logits; its summaries are a few KiB. summarize_row is the host
// reference of the CUDA kernel (kernels/cuda/sample_rows.cu), with the sampler's own arithmetic,
// so that a draw from a summary equals the draw from the row.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace xq {

// Candidates a summary keeps per row: more than OpenAI's 20 top_logprobs, enough for the usual
// top-k and most top-p heads.
inline constexpr int kSummaryCandidates = 64;

struct RowDrawSpec {
  float inv_temperature = 0.0f;  // 0: no sums at a temperature (greedy)
  double u01 = -1.0;             // >= 0: also draw from every listable id with this uniform
};

struct RowSummary {
  std::vector<int> ids;        // the best listable ids, best first (ties: lower id first)
  std::vector<float> logits;   // their logits
  double lse = 0.0;            // log(sum(exp(logit))) over the whole row, padded ids included
  double sum_t = 0.0;          // sum over listable ids of exp(logit * inv_t - best * inv_t)
  int drawn = -1;              // the draw from every listable id (spec.u01 >= 0), else -1
  float drawn_logit = 0.0f;
};

// The first `k` ids of `logits` (or fewer) in the sampler's order: by logit, ties by id.
std::vector<int> best_ids(std::span<const float> logits, int k);

// The summary of `row` (the model's whole vocabulary) whose first `listable` ids may be drawn
// or listed.
RowSummary summarize_row(std::span<const float> row, size_t listable, int k,
                         const RowDrawSpec& spec);

}  // namespace xq
