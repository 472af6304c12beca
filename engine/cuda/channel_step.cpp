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

ClBlockStep build_cl_block_step(StepLayout& L, const ChannelStep& c, int group) {
  std::vector<int>& v = L.ints;
  ClBlockStep out;
  out.num_blocks = c.num_blocks;
  // The sequences' own AttnSeq (q_row, n, start, table), their slots, and the blocks (i, b).
  std::vector<int> seq_of(c.num_blocks), block_of(c.num_blocks);
  for (int j = 0; j < c.num_blocks; ++j) {
    seq_of[j] = v[c.blocks + 2 * j];
    block_of[j] = v[c.blocks + 2 * j + 1];
  }
  out.seqs = v.size();
  for (int j = 0; j < c.num_blocks; ++j) {
    const int table = v[L.seqs + 4 * seq_of[j] + 3];
    v.insert(v.end(), {j * group, group, block_of[j] * group, table});
  }
  out.blocks = v.size();
  for (int j = 0; j < c.num_blocks; ++j) v.insert(v.end(), {j, block_of[j]});
  out.slots = v.size();
  for (int j = 0; j < c.num_blocks; ++j) {
    const int slot = v[c.slots + seq_of[j]];
    v.push_back(slot);
  }
  out.row_page = v.size();
  for (int j = 0; j < c.num_blocks; ++j) {
    const int table = v[L.seqs + 4 * seq_of[j] + 3];
    for (int p = block_of[j] * group; p < (block_of[j] + 1) * group; ++p) {
      const int page = v[L.tables + table + p / kPageRows];
      v.push_back(page);
    }
  }
  out.row_slot = v.size();
  for (int j = 0; j < c.num_blocks; ++j)
    for (int p = block_of[j] * group; p < (block_of[j] + 1) * group; ++p)
      v.push_back(p % kPageRows);
  int j = 0;
  for (const StepLayout::Group& g : L.groups) {
    while (j < c.num_blocks && seq_of[j] < g.seq_begin) ++j;
    out.group_first.push_back(j);
    while (j < c.num_blocks && seq_of[j] < g.seq_end) ++j;
  }
  out.group_first.push_back(c.num_blocks);
  return out;
}

}  // namespace xq::cuda
