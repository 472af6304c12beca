// BatchPlanner and OutputProcessor: the scheduling policy and the stop-string logic, without a model.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>

#include "scheduler/batch_planner.h"
#include "scheduler/block_manager.h"
#include "scheduler/output_processor.h"

namespace xq {
namespace {

std::unique_ptr<Sequence> make_seq(int prompt_len) {
  auto s = std::make_unique<Sequence>();
  s->tokens.assign(prompt_len, 1);
  s->prompt_len = prompt_len;
  return s;
}

TEST(BatchPlanner, ChunksLongPromptsUnderTheTokenBudget) {
  BlockManager bm(100, 16);
  BatchPlanner p(/*max_num_seqs=*/4, /*max_num_batched_tokens=*/8, bm);
  auto a = make_seq(20);
  p.add(a.get());
  auto c1 = p.plan();
  ASSERT_EQ(c1.size(), 1u);
  EXPECT_EQ(c1[0].n, 8);
  a->num_cached += 8;
  auto c2 = p.plan();
  EXPECT_EQ(c2[0].n, 8);
  a->num_cached += 8;
  auto c3 = p.plan();
  EXPECT_EQ(c3[0].n, 4);
}

TEST(BatchPlanner, DecodesGoFirstThenNewPrefills) {
  BlockManager bm(100, 16);
  BatchPlanner p(4, 6, bm);
  auto a = make_seq(3), b = make_seq(10);
  p.add(a.get());
  p.plan();
  a->num_cached = 3;
  a->tokens.push_back(7);  // sampled: one token pending
  p.add(b.get());
  auto c = p.plan();
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].seq, a.get());
  EXPECT_EQ(c[0].n, 1);
  EXPECT_EQ(c[1].seq, b.get());
  EXPECT_EQ(c[1].n, 5);
}

TEST(BatchPlanner, RespectsMaxNumSeqsAndRemove) {
  BlockManager bm(100, 16);
  BatchPlanner p(2, 100, bm);
  auto a = make_seq(2), b = make_seq(2), c = make_seq(2);
  p.add(a.get());
  p.add(b.get());
  p.add(c.get());
  EXPECT_EQ(p.plan().size(), 2u);
  EXPECT_EQ(p.waiting().size(), 1u);
  EXPECT_TRUE(p.remove(a.get()));
  EXPECT_FALSE(p.remove(a.get()));
  a->num_cached = 2;
  b->num_cached = 2;  // nothing pending for b: it is skipped
  auto next = p.plan();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].seq, c.get());
}

TEST(BatchPlanner, AdmissionWaitsForBlocksInFcfsOrder) {
  BlockManager bm(4, 4);  // 16 tokens in all
  BatchPlanner p(8, 100, bm);
  auto a = make_seq(10), b = make_seq(8), c = make_seq(2);
  p.add(a.get());
  p.add(b.get());
  p.add(c.get());
  auto chunks = p.plan();
  ASSERT_EQ(chunks.size(), 1u) << "b does not fit; c may not overtake it";
  EXPECT_EQ(a->blocks, 3);
  EXPECT_EQ(p.waiting().size(), 2u);
  p.remove(a.get());
  EXPECT_EQ(bm.free(), 4);
  EXPECT_EQ(p.plan().size(), 2u);
}

TEST(BatchPlanner, PreemptsTheNewestWhenADecodeNeedsABlock) {
  BlockManager bm(4, 4);
  BatchPlanner p(8, 100, bm);
  auto a = make_seq(4), b = make_seq(8);
  p.add(a.get());
  p.add(b.get());
  ASSERT_EQ(p.plan().size(), 2u);  // a: 1 block, b: 2 blocks, 1 free (watermark 1 allowed it)
  a->num_cached = 4;
  b->num_cached = 8;
  a->tokens.push_back(1);  // a needs a 2nd block; b a 3rd: only one is free
  b->tokens.push_back(1);
  auto chunks = p.plan();
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].seq, a.get());
  EXPECT_EQ(p.preemptions(), 1u);
  EXPECT_EQ(b->num_cached, 0) << "the preempted sequence is recomputed";
  EXPECT_EQ(b->blocks, 0);
  ASSERT_EQ(p.waiting().front(), b.get()) << "requeued at the front";
  EXPECT_EQ(bm.free(), 2);
}

// Random lifecycles on a pool with the plain cost, and on one where half of a token's bytes sit
// in sliding-window layers that hold only 12 tokens.
class RandomLifecycles : public ::testing::TestWithParam<TokenCost> {};

TEST_P(RandomLifecycles, LeakNoBlock) {
  BlockManager bm(64, 4, GetParam());
  BatchPlanner p(16, 64, bm);
  std::mt19937 rng(7);
  std::vector<std::unique_ptr<Sequence>> live;
  int finished = 0;
  for (int step = 0; step < 20000 && finished < 3000; ++step) {
    if (live.size() < 40 && rng() % 3 == 0) {
      live.push_back(make_seq(1 + rng() % 40));
      live.back()->req.max_tokens = 1 + rng() % 30;
      p.add(live.back().get());
    }
    for (const PlannedChunk& c : p.plan()) {
      Sequence* s = c.seq;
      s->num_cached += c.n;
      if (s->pending() == 0) s->tokens.push_back(1);
    }
    for (size_t i = 0; i < live.size();) {
      Sequence* s = live[i].get();
      const bool done = s->num_generated() >= s->req.max_tokens;
      const bool aborted = rng() % 200 == 0;
      if (done || aborted) {
        p.remove(s);
        live.erase(live.begin() + i);
        ++finished;
      } else {
        ++i;
      }
    }
    int64_t held = 0;
    for (auto& s : live) {
      held += s->blocks;
      ASSERT_GE(s->blocks, bm.blocks_for_tokens(s->num_cached)) << "cached tokens without blocks";
    }
    ASSERT_EQ(held + bm.free(), bm.total()) << "at step " << step;
  }
  for (auto& s : live) p.remove(s.get());
  EXPECT_GT(finished, 1000);
  EXPECT_GT(p.preemptions(), 0u);
  EXPECT_EQ(bm.free(), bm.total());
}

INSTANTIATE_TEST_SUITE_P(Costs, RandomLifecycles,
                         ::testing::Values(TokenCost{}, TokenCost{1.0, 1.0, 12}));

// Sliding-window layers: a quarter of a token's bytes held only for the last 32 tokens.
TEST(BlockManager, SlidingLayersCostOnlyTheirWindow) {
  const TokenCost cost{3.0, 1.0, 32};
  EXPECT_EQ(BlockManager::blocks_for_budget(16 * 4.0 * 10, cost, 16), 10);
  BlockManager bm(10, 16, cost);
  // Inside the window a token costs its full bytes: one block per 16 tokens.
  EXPECT_EQ(bm.blocks_for_tokens(16), 1);
  EXPECT_EQ(bm.blocks_for_tokens(32), 2);
  // Past it, 3/4 of that: 64 more tokens are 48 token-equivalents, 3 blocks.
  EXPECT_EQ(bm.blocks_for_tokens(96), 5);
  EXPECT_EQ(bm.blocks_for_tokens(97), 6);
  // 160 token-equivalents: 32 full ones, then 128 / 0.75.
  EXPECT_EQ(bm.max_tokens(), 32 + 170);
  EXPECT_EQ(bm.blocks_for_tokens(bm.max_tokens()), 10);
  EXPECT_EQ(bm.blocks_for_tokens(bm.max_tokens() + 1), 11);
  for (int64_t t = 1; t < 400; ++t) EXPECT_GE(bm.blocks_for_tokens(t), bm.blocks_for_tokens(t - 1));
  // Without sliding layers the cost is the plain ceiling.
  BlockManager plain(10, 16);
  EXPECT_EQ(plain.blocks_for_tokens(97), 7);
  EXPECT_EQ(plain.max_tokens(), 160);
}

// A tokenizer whose tokens are fixed byte strings: enough to drive the output logic.
class PieceTokenizer : public Tokenizer {
 public:
  explicit PieceTokenizer(std::vector<std::string> pieces) : pieces_(std::move(pieces)) {}
  std::vector<int> encode(std::string_view, bool) const override { return {}; }
  std::string token_bytes(int id) const override { return pieces_.at(id); }
  std::string decode(std::span<const int> ids, bool) const override {
    std::string s;
    for (int id : ids) s += pieces_.at(id);
    return s;
  }
  int vocab_size() const override { return static_cast<int>(pieces_.size()); }
  bool is_special(int) const override { return false; }
  std::optional<int> token_id(std::string_view) const override { return std::nullopt; }

 private:
  std::vector<std::string> pieces_;
};

std::string run(OutputProcessor& out, const std::vector<int>& ids) {
  std::string text;
  for (int id : ids) {
    text += out.push(id);
    if (out.stopped()) return text;
  }
  return text + out.finish();
}

TEST(OutputProcessor, StopStringAcrossTokensIsCutAndNotReturned) {
  PieceTokenizer tok({"Hello", " wor", "ld", " E", "ND", " more"});
  OutputProcessor out(tok, {" END"}, true);
  EXPECT_EQ(run(out, {0, 1, 2, 3, 4, 5}), "Hello world");
  EXPECT_TRUE(out.stopped());
}

TEST(OutputProcessor, HeldBackPrefixIsReleasedWhenNoStopFollows) {
  PieceTokenizer tok({"a", " E", "x"});
  OutputProcessor out(tok, {" END"}, true);
  std::string text = out.push(0);
  text += out.push(1);
  EXPECT_EQ(text, "a") << "a possible stop prefix is held";
  text += out.push(2);
  text += out.finish();
  EXPECT_EQ(text, "a Ex");
  EXPECT_FALSE(out.stopped());
}

TEST(OutputProcessor, NeverReleasesHalfACharacter) {
  // "é" is C3 A9, split over two tokens.
  PieceTokenizer tok({"caf", "\xC3", "\xA9", "!"});
  OutputProcessor out(tok, {}, true);
  EXPECT_EQ(out.push(0), "caf");
  EXPECT_EQ(out.push(1), "");
  EXPECT_EQ(out.push(2), "\xC3\xA9");
  EXPECT_EQ(out.push(3) + out.finish(), "!");
}

TEST(OutputProcessor, StopAtTheVeryStart) {
  PieceTokenizer tok({"##", "x"});
  OutputProcessor out(tok, {"#"}, true);
  EXPECT_EQ(run(out, {0, 1}), "");
  EXPECT_TRUE(out.stopped());
}

}  // namespace
}  // namespace xq
