#include "scheduler/step_draws.h"

#include <optional>
#include <utility>

namespace xq {
namespace {

bool draws_now(const Sequence& s, int n) {
  return s.pending() == n && s.num_generated() < s.req.max_tokens;
}

// The token spans a draw's penalties and bans read.
struct DrawInputs {
  std::span<const int> prompt, history, banned;
};
DrawInputs draw_inputs(const Sequence& s) {
  DrawInputs in;
  in.prompt = std::span<const int>(s.tokens.data(), s.prompt_len);
  in.history = std::span<const int>(s.tokens.data() + s.prompt_len, s.num_generated());
  if (s.num_generated() < s.req.min_tokens) in.banned = s.min_tokens_banned;
  return in;
}

}  // namespace

StepDraws make_draws(std::span<const PlannedChunk> chunks, std::span<const SeqInput> inputs,
                     std::span<const float> logits, size_t vocab, size_t listable) {
  StepDraws out;
  out.draw_of.assign(chunks.size(), -1);
  size_t row = 0;  // the chunk's first logits row
  for (size_t i = 0; i < chunks.size(); ++i) {
    const Sequence& s = *chunks[i].seq;
    const int n = chunks[i].n;
    const size_t rows = inputs[i].all_logits ? n : 1;
    if (draws_now(s, n)) {
      out.draw_of[i] = static_cast<int>(out.draws.size());
      const DrawInputs in = draw_inputs(s);
      SampleTask t;
      t.sampler = &*chunks[i].seq->sampler;
      if (!logits.empty()) {
        const std::span<const float> last = logits.subspan((row + rows - 1) * vocab, vocab);
        t.logits = last.first(listable);
        t.full_row = last;
      }
      t.prompt = in.prompt;
      t.history = in.history;
      t.banned = in.banned;
      t.logprobs = s.req.logprobs;
      out.draws.push_back(t);
    }
    row += rows;
  }
  return out;
}

RowDrawSpec plan_draw(Sampler& sampler, std::span<const int> history, std::span<const int> prompt,
                      std::span<const int> banned, int logprobs, size_t listable,
                      size_t& edit_budget) {
  if (!sampler.changes_row(history, prompt, banned)) return sampler.plan(listable, false);
  std::optional<std::vector<LogitEdit>> edits =
      sampler.row_edits(history, prompt, banned, listable, edit_budget);
  if (!edits) return sampler.plan(listable, true);
  edit_budget -= edits->size();
  RowDrawSpec spec = sampler.plan(listable, false);
  spec.edits = std::move(*edits);
  spec.edited = true;
  spec.raw_summary = logprobs >= 0;
  return spec;
}

std::vector<RowDrawSpec> plan_draws(std::span<const PlannedChunk> chunks, size_t listable) {
  std::vector<RowDrawSpec> specs(chunks.size());
  size_t edit_budget = kMaxStepEdits;
  for (size_t i = 0; i < chunks.size(); ++i) {
    Sequence& s = *chunks[i].seq;
    if (!draws_now(s, chunks[i].n)) continue;
    const DrawInputs in = draw_inputs(s);
    specs[i] = plan_draw(*s.sampler, in.history, in.prompt, in.banned, s.req.logprobs, listable,
                         edit_budget);
  }
  return specs;
}

void draw_from_summaries(Model& model, size_t listable, const std::vector<RowSummary>& summaries,
                         const std::vector<int>& draw_of, std::vector<SampleTask>& draws,
                         std::vector<float>& fetched_rows, int threads) {
  std::vector<int> rows;       // summary rows to copy whole
  std::vector<int> row_draw;   // the draw each copied row belongs to
  std::vector<bool> resample;  // whether that draw still needs its token (else only logprobs)
  for (size_t i = 0; i < draw_of.size(); ++i) {
    if (draw_of[i] < 0) continue;
    SampleTask& t = draws[draw_of[i]];
    const RowSummary& sum = summaries.at(i);
    std::optional<int> tok;
    // An edited summary is of the row the sampler would draw from.
    if (sum.edited || !t.sampler->changes_row(t.history, t.prompt, t.banned))
      tok = t.sampler->sample_summary(sum, listable);
    if (tok) {
      t.token = *tok;
      if (t.logprobs < 0) continue;
      t.logprob = summary_logprob(sum, t.token, t.logprobs, listable);
      if (t.logprob) continue;
    }
    rows.push_back(static_cast<int>(i));
    row_draw.push_back(draw_of[i]);
    resample.push_back(!tok);
  }
  if (rows.empty()) return;
  model.copy_logit_rows(rows, fetched_rows);
  const size_t vocab = model.config().vocab_size;
  std::vector<SampleTask> redraw;
  std::vector<int> redraw_of;
  for (size_t j = 0; j < rows.size(); ++j) {
    SampleTask& t = draws[row_draw[j]];
    const float* r = fetched_rows.data() + j * vocab;
    t.logits = std::span<const float>(r, listable);
    t.full_row = std::span<const float>(r, vocab);
    if (resample[j]) {
      redraw.push_back(t);
      redraw_of.push_back(row_draw[j]);
    } else {
      t.logprob = token_logprob(t.full_row, t.token, t.logprobs, listable);
    }
  }
  sample_batch(redraw, threads);
  for (size_t j = 0; j < redraw.size(); ++j) draws[redraw_of[j]] = std::move(redraw[j]);
}

}  // namespace xq
