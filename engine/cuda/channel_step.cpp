#include "engine/cuda/channel_step.h"

#include <algorithm>

namespace xq::cuda {

ChannelStep build_channel_step(StepLayout& L, const std::vector<StepSeq>& seqs,
                               const std::vector<int>& slots, int group, bool value_ring) {
  std::vector<int>& v = L.ints;
  ChannelStep c;
  c.slots = v.size();
  v.insert(v.end(), slots.begin(), slots.end());
  // Block b is filled by the step when its last position, (b + 1) G - 1, is among the new ones.
  c.blocks = v.size();
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int end = seqs[i].start + seqs[i].n;
    for (int b = seqs[i].start / group; (b + 1) * group <= end; ++b) {
      v.insert(v.end(), {static_cast<int>(i), b});
      ++c.num_blocks;
    }
  }
  if (value_ring) {
    std::vector<int> pages, rows;
    c.spill = v.size();
    for (size_t i = 0; i < seqs.size(); ++i) {
      const StepSeq& s = seqs[i];
      for (int p = std::max(0, s.start - group); p < s.start + s.n - group; ++p) {
        v.insert(v.end(), {static_cast<int>(i), p});
        pages.push_back((*s.pages)[p / kPageRows]);
        rows.push_back(p % kPageRows);
        ++c.num_spill;
      }
    }
    c.spill_page = v.size();
    v.insert(v.end(), pages.begin(), pages.end());
    c.spill_slot = v.size();
    v.insert(v.end(), rows.begin(), rows.end());
  }
  for (const StepLayout::Group& g : L.groups) {
    c.ws_seq.push_back(v.size());
    const size_t at = v.size();
    v.resize(at + g.ws_rows, -1);
    int row = 0;
    for (int i = g.seq_begin; i < g.seq_end; ++i) {
      const int len = seqs[i].start + seqs[i].n;
      std::fill(v.begin() + at + row, v.begin() + at + row + len, i);
      row += (len + kPageRows - 1) / kPageRows * kPageRows;
    }
  }
  return c;
}

}  // namespace xq::cuda
