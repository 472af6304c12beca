// A step's draws: which sequences draw a token, what their samplers are handed, and, where the
// logits stayed on the model's device, each draw from its row's summary where the summary
// decides it, else from the whole row, copied back for that draw alone.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "engine/model/model.h"
#include "engine/sampler.h"
#include "scheduler/batch_planner.h"
#include "scheduler/sequence.h"

namespace xq {

// The draws of a step's chunks (inputs[i] is chunk i's, with its logits rows as forward()
// returns them; chunks[i].seq draws when its chunk ends its pending tokens and it may still
// generate). draw_of[i] is chunk i's draw or -1.
struct StepDraws {
  std::vector<SampleTask> draws;
  std::vector<int> draw_of;
};

// The tasks, each pointing into `logits` (empty when the step returned row summaries: the rows
// are not on the host).
StepDraws make_draws(std::span<const PlannedChunk> chunks, std::span<const SeqInput> inputs,
                     std::span<const float> logits, size_t vocab, size_t listable);

// Before a summarized step: each drawing chunk's spec (its sampler takes the draw's uniform now),
// with the edits its penalties, bias and banned ids make, which the model applies on its device
// (while the step's edits stay within kMaxStepEdits; a row past them is copied back whole).
std::vector<RowDrawSpec> plan_draws(std::span<const PlannedChunk> chunks, size_t listable);

// One draw's spec: `edit_budget` is what is left of the step's edits, less this row's.
RowDrawSpec plan_draw(Sampler& sampler, std::span<const int> history, std::span<const int> prompt,
                      std::span<const int> banned, int logprobs, size_t listable,
                      size_t& edit_budget);

// Row i's summary belongs to draws[draw_of[i]] (draw_of[i] < 0: no draw). Fills each draw's
// token and, where asked, logprob; `fetched_rows` holds the rows copied back.
void draw_from_summaries(Model& model, size_t listable, const std::vector<RowSummary>& summaries,
                         const std::vector<int>& draw_of, std::vector<SampleTask>& draws,
                         std::vector<float>& fetched_rows, int threads);

}  // namespace xq
