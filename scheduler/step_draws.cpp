#include "scheduler/step_draws.h"

#include <optional>

namespace xq {

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
    if (!t.sampler->changes_row(t.history, t.prompt, t.banned))
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
