// The per-channel formats' step arrays (engine/cuda/channel_step.h), host code that needs no GPU:
// which blocks a step fills, which of KIVI's values leave the fp16 ring (and where their rows
// go), and which sequence each workspace row belongs to.
#include <gtest/gtest.h>

#include <vector>

#include "engine/cuda/channel_step.h"

namespace xq::cuda {
namespace {

struct Seq {
  std::vector<int> pages;
  std::vector<int> tokens;
  int start;
};

std::vector<StepSeq> step_of(std::vector<Seq>& seqs) {
  std::vector<StepSeq> out;
  for (Seq& s : seqs)
    out.push_back({&s.pages, s.tokens.data(), s.start, static_cast<int>(s.tokens.size())});
  return out;
}

std::vector<int> slice(const StepLayout& L, size_t at, size_t n) {
  return {L.ints.begin() + at, L.ints.begin() + at + n};
}

TEST(ChannelStep, BlocksFilledByTheStepRingSpillsAndWorkspaceRows) {
  // G 8: sequence 0 has 6 tokens and gets 12 (fills blocks 0 and 1, ends inside block 2);
  // sequence 1 has 16 and gets 1 (fills none); sequence 2 has 7 and gets 1 (fills block 0).
  std::vector<Seq> seqs = {{{4, 9}, std::vector<int>(12), 6},
                           {{2, 7}, std::vector<int>(1), 16},
                           {{5}, std::vector<int>(1), 7}};
  const std::vector<StepSeq> ss = step_of(seqs);
  StepLayout L = build_step_layout(ss, 1 << 20, 1);
  const ChannelStep c = build_channel_step(L, ss, {3, 0, 1}, 8, true);
  EXPECT_EQ(slice(L, c.slots, 3), (std::vector<int>{3, 0, 1}));
  ASSERT_EQ(c.num_blocks, 3);
  EXPECT_EQ(slice(L, c.blocks, 6), (std::vector<int>{0, 0, 0, 1, 2, 0}));
  // Values older than the last 8 after the step: sequence 0 positions [0, 10), sequence 1
  // position 8 (16 + 1 - 8 = 9 held back from 8 on), sequence 2 none (8 tokens).
  ASSERT_EQ(c.num_spill, 11);
  const std::vector<int> spill = slice(L, c.spill, 22);
  EXPECT_EQ(spill[0], 0);
  EXPECT_EQ(spill[19], 9);
  EXPECT_EQ(spill[20], 1);
  EXPECT_EQ(spill[21], 8);
  EXPECT_EQ(slice(L, c.spill_page, 11), (std::vector<int>{4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 2}));
  EXPECT_EQ(slice(L, c.spill_slot, 11), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 8}));
  // Workspace: sequence 0's 18 positions in 32 rows, sequence 1's 17 in 32, sequence 2's 8 in 16.
  ASSERT_EQ(L.groups.size(), 1u);
  ASSERT_EQ(c.ws_seq.size(), 1u);
  const std::vector<int> ws = slice(L, c.ws_seq[0], L.groups[0].ws_rows);
  ASSERT_EQ(ws.size(), 80u);
  for (int r = 0; r < 80; ++r) {
    const int want = r < 18 ? 0 : r < 32 ? -1 : r < 49 ? 1 : r < 64 ? -1 : r < 72 ? 2 : -1;
    EXPECT_EQ(ws[r], want) << "workspace row " << r;
  }
}

TEST(ChannelStep, LargeGroupsFillAtTheirLastPosition) {
  // G 128: a decode at position 127 fills block 0; a prefill of 300 fills blocks 0 and 1.
  std::vector<Seq> seqs = {{std::vector<int>(8, 1), std::vector<int>(1), 127},
                           {std::vector<int>(19, 2), std::vector<int>(300), 0}};
  const std::vector<StepSeq> ss = step_of(seqs);
  StepLayout L = build_step_layout(ss, 0, 1);
  const ChannelStep c = build_channel_step(L, ss, {0, 1}, 128, false);
  ASSERT_EQ(c.num_blocks, 3);
  EXPECT_EQ(slice(L, c.blocks, 6), (std::vector<int>{0, 0, 1, 0, 1, 1}));
  EXPECT_EQ(c.num_spill, 0);      // no value ring
  EXPECT_TRUE(c.ws_seq.empty());  // no workspace
}

TEST(ChannelStep, ClStagesEachFilledBlockAsRowsOfItsOwn) {
  // G 8, a workspace of 32 rows: sequence 0 (6 tokens, gets 12) alone in group 0, sequences 1
  // (16 + 1) and 2 (7 + 1) in groups 1 and 2. Blocks filled: (0, 0), (0, 1), (2, 0).
  std::vector<Seq> seqs = {{{4, 9}, std::vector<int>(12), 6},
                           {{2, 7}, std::vector<int>(1), 16},
                           {{5}, std::vector<int>(1), 7}};
  const std::vector<StepSeq> ss = step_of(seqs);
  StepLayout L = build_step_layout(ss, 32, 1);
  ASSERT_EQ(L.groups.size(), 3u);
  const ChannelStep c = build_channel_step(L, ss, {3, 0, 1}, 8, false);
  const ClBlockStep b = build_cl_block_step(L, c, 8);
  ASSERT_EQ(b.num_blocks, 3);
  // Stand-in sequence j: staged rows [8 j, 8 j + 8) at the block's positions, its sequence's
  // page table (sequence 0's at table offset 0, sequence 2's after 2 + 2 pages).
  EXPECT_EQ(slice(L, b.seqs, 12), (std::vector<int>{0, 8, 0, 0, 8, 8, 8, 0, 16, 8, 0, 4}));
  EXPECT_EQ(slice(L, b.blocks, 6), (std::vector<int>{0, 0, 1, 1, 2, 0}));
  EXPECT_EQ(slice(L, b.slots, 3), (std::vector<int>{3, 3, 1}));
  // The staged rows' cache rows: positions 0..15 of sequence 0 (page 4), 0..7 of sequence 2.
  const std::vector<int> page = slice(L, b.row_page, 24), slot = slice(L, b.row_slot, 24);
  for (int r = 0; r < 24; ++r) {
    EXPECT_EQ(page[r], r < 16 ? 4 : 5) << r;
    EXPECT_EQ(slot[r], r < 16 ? r : r - 16) << r;
  }
  // Group 0 holds blocks [0, 2), group 1 none, group 2 block 2.
  EXPECT_EQ(b.group_first, (std::vector<int>{0, 2, 2, 3}));
}

}  // namespace
}  // namespace xq::cuda
