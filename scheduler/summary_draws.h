// The draws of a step whose logits stayed on the model's device: each from its row's summary
// where the summary decides it, else from the whole row, copied back for that draw alone.
#pragma once

#include <cstddef>
#include <vector>

#include "engine/model/model.h"
#include "engine/sampler.h"

namespace xq {

// Row i's summary belongs to draws[draw_of[i]] (draw_of[i] < 0: no draw). Fills each draw's
// token and, where asked, logprob; `fetched_rows` holds the rows copied back.
void draw_from_summaries(Model& model, size_t listable, const std::vector<RowSummary>& summaries,
                         const std::vector<int>& draw_of, std::vector<SampleTask>& draws,
                         std::vector<float>& fetched_rows, int threads);

}  // namespace xq
