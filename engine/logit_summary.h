// What a draw needs of a row of logits that stays on its device: the k best ids with their
// logits, the row's log-sum-exp (for logprobs), the softmax normalizer at the draw's temperature,
// and, for a draw from the whole vocabulary, the token it lands on. A 32-row step of a 128k
// vocabulary is 16 MiB of fp32 logits; its summaries are a few KiB. summarize_row is the host
// reference of the CUDA kernel (kernels/cuda/sample_rows.cu), with the sampler's own arithmetic,
// so that a draw from a summary equals the draw from the row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace xq {

// Candidates a summary keeps per row: more than OpenAI's 20 top_logprobs, enough for the usual
// top-k and most top-p heads.
inline constexpr int kSummaryCandidates = 64;

// The edits of one step's rows together: past this many, a row's draw takes its whole row to the
// host instead (e.g. 64 sequences with 4k-token prompts under a repetition penalty), so that the
// pinned buffers stay at a few MiB (28 bytes an edit up and down).
inline constexpr size_t kMaxStepEdits = size_t{1} << 18;

// One logit's change before a draw, in the host sampler's order and arithmetic: the repetition
// penalty (divide a positive logit by `rep`, multiply another), minus the presence and frequency
// penalties' `sub`, plus logit_bias's `add`, then a ban (-inf). `ops` says which apply, so that an
// absent one is not even a + 0 (which turns -0 into +0).
struct LogitEdit {
  enum : uint32_t { kRep = 1, kSub = 2, kAdd = 4, kBan = 8 };
  int id = 0;
  uint32_t ops = 0;
  float rep = 1.0f, sub = 0.0f, add = 0.0f;
};

// `row[edit.id]` changed as the edit says (the host reference of the CUDA edit kernel).
float edited_logit(float l, const LogitEdit& e);
void apply_edits(std::span<float> row, std::span<const LogitEdit> edits);

struct RowDrawSpec {
  float inv_temperature = 0.0f;  // 0: no sums at a temperature (greedy)
  double u01 = -1.0;             // >= 0: also draw from every listable id with this uniform
  // The sampler's changes to the row (penalties, bias, banned ids; one edit per id, ids below
  // listable), made before it is summarized. `edited`: they are all of its changes, so that its
  // draw can be decided from the summary like any other.
  std::vector<LogitEdit> edits;
  bool edited = false;
  // Logprobs are of the model's row, not the edited one: also summarize the row before its edits.
  bool raw_summary = false;
};

struct RowSummary {
  std::vector<int> ids;        // the best listable ids, best first (ties: lower id first)
  std::vector<float> logits;   // their logits
  double lse = 0.0;            // log(sum(exp(logit))) over the whole row, padded ids included
  double sum_t = 0.0;          // sum over listable ids of exp(logit * inv_t - best * inv_t)
  int drawn = -1;              // the draw from every listable id (spec.u01 >= 0), else -1
  float drawn_logit = 0.0f;
  // The fields above are of the row after its spec's edits (spec.edited); each edited id with
  // its logit before them; with spec.raw_summary and edits, the best listable ids, their logits
  // and the log-sum-exp of the row before them (has_raw).
  bool edited = false;
  std::vector<std::pair<int, float>> unedited;
  bool has_raw = false;
  std::vector<int> raw_ids;
  std::vector<float> raw_logits;
  double raw_lse = 0.0;
};

// The first `k` ids of `logits` (or fewer) in the sampler's order: by logit, ties by id.
std::vector<int> best_ids(std::span<const float> logits, int k);

// The summary of `row` (the model's whole vocabulary) whose first `listable` ids may be drawn
// or listed, after the spec's edits where it is edited.
RowSummary summarize_row(std::span<const float> row, size_t listable, int k,
                         const RowDrawSpec& spec);

}  // namespace xq
