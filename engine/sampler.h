// Sampler: turns one row of logits into a token (greedy, temperature, top-k, top-p, min-p,
// penalties, logit bias), seeded per request, and computes logprobs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "engine/logit_summary.h"

namespace xq {

struct SamplingParams {
  float temperature = 1.0f;  // 0: greedy
  float top_p = 1.0f;
  int top_k = 0;             // 0 or -1: off
  float min_p = 0.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  float repetition_penalty = 1.0f;
  std::vector<std::pair<int, float>> logit_bias;
  std::optional<uint64_t> seed;
};

struct TokenLogprob {
  int token = -1;
  float logprob = 0.0f;
  std::vector<std::pair<int, float>> top;  // (token, logprob), best first
};

class Sampler {
 public:
  // `fallback_seed` is used when the params carry no seed.
  Sampler(SamplingParams params, uint64_t fallback_seed);
  // Applies penalties and bias to `logits` in place, then picks a token. Presence and frequency
  // penalties count `history`, the tokens generated so far; the repetition penalty, as in HF
  // and vLLM, every token of `prompt` and `history`. `banned` ids are never drawn (EOS before
  // min_tokens).
  int sample(std::span<float> logits, std::span<const int> history,
             std::span<const int> prompt = {}, std::span<const int> banned = {});
  // The same on a row left unchanged: copied into `scratch` only when something changes it.
  int sample(std::span<const float> logits, std::span<const int> history,
             std::vector<float>& scratch, std::span<const int> prompt = {},
             std::span<const int> banned = {});

  // Whether penalties, bias or banned ids change the row before the draw.
  bool changes_row(std::span<const int> history, std::span<const int> prompt,
                   std::span<const int> banned) const;
  // The changes penalties, bias and banned ids make to a row's first `listable` ids, as one
  // edit per id (RowDrawSpec::edits; the prompt's ids first, sorted, then the others as they
  // are met): apply_edits of them to a row equals what sample() does to it before its draw. nullopt where edits cannot say it: more than
  // `max_edits`, an id biased twice (the adds would round in order), every id banned.
  std::optional<std::vector<LogitEdit>> row_edits(std::span<const int> history,
                                                  std::span<const int> prompt,
                                                  std::span<const int> banned, size_t listable,
                                                  size_t max_edits) const;
  // For a row that stays on its device: what its summary must hold. Takes the draw's uniform
  // now; the next sample() or a successful sample_summary() of this draw uses it.
  RowDrawSpec plan(size_t listable, bool changes);
  // The token the draw from the whole row would give, or nullopt when the summary cannot tell
  // (a top-p or min-p head longer than the candidates, top-k past them): sample() the row then.
  // Only for rows that changes_row() leaves unchanged, or summaries of the row after its
  // row_edits() (planned with changes = false).
  std::optional<int> sample_summary(const RowSummary& s, size_t listable);

 private:
  int draw(std::span<const float> logits);
  double uniform();

  // The prompt's distinct ids below n, sorted: every step's edits under a repetition penalty
  // start from them, and a sequence's prompt does not change (known by its length and hash).
  const std::vector<int>& prompt_ids(std::span<const int> prompt, int n) const;

  SamplingParams p_;
  std::mt19937_64 rng_;
  std::optional<double> planned_u_;  // the uniform plan() took for the coming draw
  struct PromptIds {
    size_t len = 0;
    uint64_t hash = 0;
    int n = -1;
    std::vector<int> ids;
  };
  mutable PromptIds prompt_ids_;
};

// What the presence and frequency penalties subtract from a token generated `count` times (one
// function, so that the sampler and its edits round it alike).
float output_penalty(const SamplingParams& p, int count);

// log_softmax(logits)[token] and the `top_n` most likely tokens (none when top_n <= 0) among
// the first `listable` ids: the softmax runs over every row of the model's vocabulary, as in HF
// and vLLM, while padded rows past the tokenizer's ids are never listed.
TokenLogprob token_logprob(std::span<const float> logits, int token, int top_n,
                           size_t listable = SIZE_MAX);
// The same from a summary; nullopt when the token or the top_n are not among its candidates.
std::optional<TokenLogprob> summary_logprob(const RowSummary& s, int token, int top_n,
                                            size_t listable);

// One sequence's draw in sample_batch.
struct SampleTask {
  Sampler* sampler = nullptr;
  std::span<const float> logits;  // the drawable ids of the model's row (left unchanged)
  // The whole row, padded ids included, that logprobs normalize over (empty: `logits`).
  std::span<const float> full_row;
  std::span<const int> history;      // the tokens generated so far
  std::span<const int> prompt;       // the prompt (for the repetition penalty)
  std::span<const int> banned;       // ids that may not be drawn now
  int logprobs = -1;                 // >= 0: also the token's logprob and this many top ones
  int token = -1;                    // out
  std::optional<TokenLogprob> logprob;  // out
};

// Draws every task's token, spread over up to `threads` threads (0: all cores). Each task has a
// sampler of its own, so the tokens are those of a loop over the tasks in order. At a 100k+
// vocabulary a draw costs milliseconds of host time: one after another for 64 sequences was
// longer than a GPU step.
void sample_batch(std::span<SampleTask> tasks, int threads);

}  // namespace xq
