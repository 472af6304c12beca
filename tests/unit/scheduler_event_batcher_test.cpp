// EventBatcher (--stream-interval): the first token goes at once, then one event per `interval`
// tokens; the last event carries what is held; nothing is lost or reordered.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "scheduler/event_batcher.h"

namespace xq {
namespace {

RequestEvent step_event(int id) {
  RequestEvent ev;
  GeneratedToken t;
  t.id = id;
  t.text = std::to_string(id);
  t.text.insert(0, 1, 't');  // not "t" + ...: GCC 12 warns falsely (-Wrestrict) on that
  t.logprob = TokenLogprob{id, -0.5f * static_cast<float>(id), {}};
  ev.tokens.push_back(t);
  ev.text = t.text + " ";
  ev.completion_tokens = id;
  return ev;
}

// Feeds tokens 1..n (the last one finishing the request) and returns the events sent.
std::vector<RequestEvent> run(int interval, int n) {
  EventBatcher b(interval);
  std::vector<RequestEvent> sent;
  for (int id = 1; id < n; ++id) {
    if (std::optional<RequestEvent> out = b.add(step_event(id))) sent.push_back(std::move(*out));
  }
  RequestEvent last = step_event(n);
  last.finished = true;
  last.finish_reason = "length";
  sent.push_back(b.flush(std::move(last)));
  return sent;
}

std::vector<size_t> sizes(const std::vector<RequestEvent>& evs) {
  std::vector<size_t> out;
  for (const RequestEvent& e : evs) out.push_back(e.tokens.size());
  return out;
}

TEST(EventBatcher, IntervalOneSendsEveryToken) {
  EXPECT_EQ(sizes(run(1, 5)), (std::vector<size_t>{1, 1, 1, 1, 1}));
}

TEST(EventBatcher, FirstTokenAloneThenGroupsOfTheInterval) {
  EXPECT_EQ(sizes(run(4, 10)), (std::vector<size_t>{1, 4, 4, 1}));
  EXPECT_EQ(sizes(run(4, 9)), (std::vector<size_t>{1, 4, 4}));
  EXPECT_EQ(sizes(run(4, 7)), (std::vector<size_t>{1, 4, 2}));
  EXPECT_EQ(sizes(run(3, 1)), (std::vector<size_t>{1}));
  EXPECT_EQ(sizes(run(100, 6)), (std::vector<size_t>{1, 5}));
}

TEST(EventBatcher, TokensTextAndCountsKeepTheirOrder) {
  for (int interval : {1, 2, 3, 8}) {
    const std::vector<RequestEvent> evs = run(interval, 11);
    std::string text;
    std::vector<int> ids;
    std::vector<float> logprobs;
    for (const RequestEvent& e : evs) {
      text += e.text;
      for (const GeneratedToken& t : e.tokens) {
        ids.push_back(t.id);
        logprobs.push_back(t.logprob->logprob);
      }
      // An event's count is that of its last token: the tokens generated so far.
      EXPECT_EQ(e.completion_tokens, e.tokens.back().id);
    }
    EXPECT_EQ(text, "t1 t2 t3 t4 t5 t6 t7 t8 t9 t10 t11 ");
    ASSERT_EQ(ids.size(), 11u);
    for (int i = 0; i < 11; ++i) {
      EXPECT_EQ(ids[i], i + 1);
      EXPECT_FLOAT_EQ(logprobs[i], -0.5f * static_cast<float>(i + 1));
    }
    EXPECT_TRUE(evs.back().finished);
    EXPECT_EQ(evs.back().finish_reason, "length");
    for (size_t i = 0; i + 1 < evs.size(); ++i) EXPECT_FALSE(evs[i].finished);
  }
}

TEST(EventBatcher, FinishWithoutANewTokenStillFlushesTheHeldOnes) {
  // An abort (or a stop on EOS after the held tokens) adds no token of its own.
  EventBatcher b(4);
  ASSERT_TRUE(b.add(step_event(1)));
  EXPECT_FALSE(b.add(step_event(2)));
  EXPECT_FALSE(b.add(step_event(3)));
  EXPECT_EQ(b.held_tokens(), 2);
  RequestEvent abort;
  abort.finished = true;
  abort.finish_reason = "abort";
  abort.completion_tokens = 3;
  const RequestEvent out = b.flush(std::move(abort));
  EXPECT_EQ(out.tokens.size(), 2u);
  EXPECT_EQ(out.text, "t2 t3 ");
  EXPECT_EQ(out.finish_reason, "abort");
  EXPECT_EQ(out.completion_tokens, 3);
  EXPECT_EQ(b.held_tokens(), 0);
}

TEST(EventBatcher, PromptLogprobsRideOnTheFirstEvent) {
  EventBatcher b(4);
  RequestEvent first = step_event(1);
  first.prompt_logprobs.emplace(3);
  const std::optional<RequestEvent> out = b.add(std::move(first));
  ASSERT_TRUE(out);
  ASSERT_TRUE(out->prompt_logprobs);
  EXPECT_EQ(out->prompt_logprobs->size(), 3u);
}

TEST(EventBatcher, TextHeldBackByTheDetokenizerStillCountsItsToken) {
  // A token whose text is not released yet (half a UTF-8 character, a possible stop string)
  // still counts toward the interval: its logprob entry must go out with the chunk.
  EventBatcher b(2);
  ASSERT_TRUE(b.add(step_event(1)));
  RequestEvent silent = step_event(2);
  silent.text.clear();
  EXPECT_FALSE(b.add(std::move(silent)));
  const std::optional<RequestEvent> out = b.add(step_event(3));
  ASSERT_TRUE(out);
  EXPECT_EQ(out->tokens.size(), 2u);
  EXPECT_EQ(out->text, "t3 ");
}

}  // namespace
}  // namespace xq
