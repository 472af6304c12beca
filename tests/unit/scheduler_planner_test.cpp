// BatchPlanner and OutputProcessor: the scheduling policy and the stop-string logic, without a model.
#include <gtest/gtest.h>

#include <map>
#include <memory>

#include "scheduler/batch_planner.h"
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
  BatchPlanner p(/*max_num_seqs=*/4, /*max_num_batched_tokens=*/8);
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
  BatchPlanner p(4, 6);
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
  BatchPlanner p(2, 100);
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
  std::string first = out.push(0) + out.push(1);
  EXPECT_EQ(first.find(" E"), std::string::npos) << "a possible stop prefix is held";
  EXPECT_EQ(first + out.push(2) + out.finish(), "a Ex");
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
