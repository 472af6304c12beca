// A step's draws: which sequences draw a token, what their samplers are handed, and, where the
// logits stayed on the model's device, each draw from its row's summary where the summary
// decides it, else from the whole row, copied back for that draw alone.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "engine/model/model.h"
#include "engine/sampler.h"
#include "scheduler/sequence.h"

namespace xq {

// Whether the step's chunk of `n` tokens ends the sequence's pending tokens with a token to draw.
inline bool draws_now(const Sequence& s, int n) {
  return s.pending() == n && s.num_generated() < s.req.max_tokens;
}

// The token spans a draw's penalties and bans read.
struct DrawInputs {
  std::span<const int> prompt, history, banned;
};
inline DrawInputs draw_inputs(const Sequence& s) {
  DrawInputs in;
  in.prompt = std::span<const int>(s.tokens.data(), s.prompt_len);
  in.history = std::span<const int>(s.tokens.data() + s.prompt_len, s.num_generated());
  if (s.num_generated() < s.req.min_tokens) in.banned = s.min_tokens_banned;
  return in;
}

// Row i's summary belongs to draws[draw_of[i]] (draw_of[i] < 0: no draw). Fills each draw's
// token and, where asked, logprob; `fetched_rows` holds the rows copied back.
void draw_from_summaries(Model& model, size_t listable, const std::vector<RowSummary>& summaries,
                         const std::vector<int>& draw_of, std::vector<SampleTask>& draws,
                         std::vector<float>& fetched_rows, int threads);

}  // namespace xq
