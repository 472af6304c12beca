// The index arrays a step of a per-channel format (kivi, xquant-ch, the per-channel K latent)
// needs beyond StepLayout's, appended to its ints so that one copy uploads them all: each
// sequence's window slot, the blocks the step fills, KIVI's values that leave their fp16 ring,
// and which sequence each workspace row belongs to.
#pragma once

#include <cstddef>
#include <vector>

#include "engine/cuda/step_layout.h"

namespace xq::cuda {

struct ChannelStep {
  size_t slots = 0;   // per sequence of the step
  size_t blocks = 0;  // (sequence, block) pairs the step fills
  int num_blocks = 0;
  size_t spill = 0, spill_page = 0, spill_slot = 0;  // (sequence, position) pairs; their rows
  int num_spill = 0;
  std::vector<size_t> ws_seq;  // per group: each workspace row's sequence (-1: padding)
};

// `slots[i]`: sequence i's window slot; `group`: G; `value_ring`: KIVI keeps its last G values
// in fp16, so the values of positions [max(0, start - G), start + n - G) are quantized now.
ChannelStep build_channel_step(StepLayout& L, const std::vector<StepSeq>& seqs,
                               const std::vector<int>& slots, int group, bool value_ring);

// XQuant-CL's -ch forms: the blocks the step fills (c's, in sequence order), each staged as G
// rows of deltas of its own (block j at staged rows [j G, j G + G)) and quantized from there
// through a stand-in sequence per block whose start is the block's first position.
struct ClBlockStep {
  size_t seqs = 0;                    // per block j: AttnSeq {j G, G, b G, its sequence's table}
  size_t blocks = 0;                  // per block j: (j, b)
  size_t slots = 0;                   // per block j: its sequence's window slot
  size_t row_page = 0, row_slot = 0;  // per staged row j G + t: position b G + t's cache row
  int num_blocks = 0;
  // group_first[gi]: group gi's first block (blocks follow their sequences, so a group's are
  // consecutive), and group_first.back() = num_blocks.
  std::vector<int> group_first;
};

ClBlockStep build_cl_block_step(StepLayout& L, const ChannelStep& c, int group);

}  // namespace xq::cuda
