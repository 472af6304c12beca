// The /v1/completions schema: which bodies are refused with which status and parameter, and how
// good ones become Requests.
#include <gtest/gtest.h>

#include "server/completions_schema.h"
#include "server/json_params.h"
#include "server_byte_tokenizer.h"

namespace xq {
namespace {

ModelLimits limits() { return ModelLimits{"tiny", "/models/tiny", 258, 64}; }

PreparedCompletion prepare(const std::string& body) {
  static const testing::ByteTokenizer tok;
  return prepare_completion(parse_completion_body(body, limits()), tok, limits());
}

struct BadCase {
  const char* body;
  int status;
  const char* param;  // nullptr: no param expected
};

class BadBody : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadBody, IsRefusedNamingTheParam) {
  const BadCase& c = GetParam();
  try {
    prepare(c.body);
    FAIL() << "accepted: " << c.body;
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, c.status) << c.body << " -> " << e.what();
    if (c.param) {
      ASSERT_TRUE(e.param.has_value()) << c.body << " -> " << e.what();
      EXPECT_EQ(*e.param, c.param) << c.body;
    } else {
      EXPECT_FALSE(e.param.has_value()) << c.body;
    }
  }
}

const BadCase kBad[] = {
    {"", 400, nullptr},
    {"{", 400, nullptr},
    {"[1,2]", 400, nullptr},
    {"\"just a string\"", 400, nullptr},
    {"{\"prompt\": \"a\xff\"}", 400, nullptr},  // not UTF-8
    {"{\"model\": \"other\", \"prompt\": \"hi\"}", 404, "model"},
    {"{\"model\": 3, \"prompt\": \"hi\"}", 400, "model"},
    {"{}", 400, "prompt"},
    {"{\"prompt\": null}", 400, "prompt"},
    {"{\"prompt\": \"\"}", 400, "prompt"},
    {"{\"prompt\": []}", 400, "prompt"},
    {"{\"prompt\": [[]]}", 400, "prompt"},
    {"{\"prompt\": 5}", 400, "prompt"},
    {"{\"prompt\": [1, \"a\"]}", 400, "prompt"},
    {"{\"prompt\": [\"a\", 1]}", 400, "prompt"},
    {"{\"prompt\": [1, 2.5]}", 400, "prompt"},
    {"{\"prompt\": [1, 258]}", 400, "prompt"},
    {"{\"prompt\": [-1]}", 400, "prompt"},
    {"{\"prompt\": [[1], [999]]}", 400, "prompt"},
    {"{\"prompt\": \"hi\", \"max_tokens\": -1}", 400, "max_tokens"},
    {"{\"prompt\": \"hi\", \"max_tokens\": \"5\"}", 400, "max_tokens"},
    {"{\"prompt\": \"hi\", \"max_tokens\": 1.5}", 400, "max_tokens"},
    {"{\"prompt\": \"hi\", \"max_tokens\": 100}", 400, "prompt"},  // 3 + 100 > 64
    {"{\"prompt\": \"hi\", \"temperature\": 2.5}", 400, "temperature"},
    {"{\"prompt\": \"hi\", \"temperature\": -0.1}", 400, "temperature"},
    {"{\"prompt\": \"hi\", \"temperature\": \"hot\"}", 400, "temperature"},
    {"{\"prompt\": \"hi\", \"top_p\": 0}", 400, "top_p"},
    {"{\"prompt\": \"hi\", \"top_p\": 1.01}", 400, "top_p"},
    {"{\"prompt\": \"hi\", \"top_k\": -2}", 400, "top_k"},
    {"{\"prompt\": \"hi\", \"min_p\": 1.5}", 400, "min_p"},
    {"{\"prompt\": \"hi\", \"seed\": \"x\"}", 400, "seed"},
    {"{\"prompt\": \"hi\", \"seed\": 1.5}", 400, "seed"},
    {"{\"prompt\": \"hi\", \"stop\": 3}", 400, "stop"},
    {"{\"prompt\": \"hi\", \"stop\": [\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "stop"},
    {"{\"prompt\": \"hi\", \"stop\": [\"a\", 1]}", 400, "stop"},
    {"{\"prompt\": \"hi\", \"stream\": \"yes\"}", 400, "stream"},
    {"{\"prompt\": \"hi\", \"stream_options\": {\"include_usage\": true}}", 400, "stream_options"},
    {"{\"prompt\": \"hi\", \"stream\": true, \"stream_options\": 1}", 400, "stream_options"},
    {"{\"prompt\": \"hi\", \"stream\": true, \"stream_options\": {\"include_usage\": 1}}", 400,
     "include_usage"},
    {"{\"prompt\": \"hi\", \"echo\": 1}", 400, "echo"},
    {"{\"prompt\": \"hi\", \"logprobs\": 21}", 400, "logprobs"},
    {"{\"prompt\": \"hi\", \"logprobs\": -1}", 400, "logprobs"},
    {"{\"prompt\": \"hi\", \"logprobs\": true}", 400, "logprobs"},
    {"{\"prompt\": \"hi\", \"n\": 0}", 400, "n"},
    {"{\"prompt\": \"hi\", \"n\": 1000}", 400, "n"},
    {"{\"prompt\": \"hi\", \"presence_penalty\": 3}", 400, "presence_penalty"},
    {"{\"prompt\": \"hi\", \"frequency_penalty\": -2.5}", 400, "frequency_penalty"},
    {"{\"prompt\": \"hi\", \"repetition_penalty\": 0}", 400, "repetition_penalty"},
    {"{\"prompt\": \"hi\", \"logit_bias\": [1]}", 400, "logit_bias"},
    {"{\"prompt\": \"hi\", \"logit_bias\": {\"abc\": 1}}", 400, "logit_bias"},
    {"{\"prompt\": \"hi\", \"logit_bias\": {\"300\": 1}}", 400, "logit_bias"},
    {"{\"prompt\": \"hi\", \"logit_bias\": {\"3\": 101}}", 400, "logit_bias"},
    {"{\"prompt\": \"hi\", \"logit_bias\": {\"3\": \"up\"}}", 400, "logit_bias"},
    {"{\"prompt\": \"hi\", \"ignore_eos\": \"no\"}", 400, "ignore_eos"},
    {"{\"prompt\": \"hi\", \"user\": 7}", 400, "user"},
    {"{\"prompt\": \"hi\", \"stop_token_ids\": [999]}", 400, "stop_token_ids"},
    {"{\"prompt\": \"hi\", \"logit_bias\": {\" 5\": 1}}", 400, "logit_bias"},
    {"{\"prompt\": \"hi\", \"logit_bias\": {\"+5\": 1}}", 400, "logit_bias"},
    {"{\"prompt\": \"hi\", \"max_tokens\": 1e400}", 400, nullptr},
    {"{\"prompt\": \"hi\", \"x\": "
     "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
     "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
     "]]]]"
     "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
     "]]]]"
     "]]]]]]]]]]]]}",
     400, nullptr},
    {"{\"prompt\": \"hi\", \"suffix\": \"x\"}", 400, "suffix"},
    {"{\"prompt\": \"hi\", \"best_of\": 1, \"n\": 2}", 400, "best_of"},
    {"{\"prompt\": \"hi\", \"best_of\": 2, \"stream\": true}", 400, "best_of"},
    {"{\"prompt\": \"hi\", \"min_tokens\": 5, \"max_tokens\": 4}", 400, "min_tokens"},
    {"{\"prompt\": \"hi\", \"response_format\": {\"type\": \"json_object\"}}", 400,
     "response_format"},
};

INSTANTIATE_TEST_SUITE_P(Table, BadBody, ::testing::ValuesIn(kBad));

TEST(CompletionsSchema, NestingUpToTheLimitIsAccepted) {
  const std::string deep(kMaxJsonDepth - 1, '[');
  const std::string body = R"({"prompt": "hi", "x": )" + deep + std::string(deep.size(), ']') + "}";
  EXPECT_NO_THROW(prepare(body));
  EXPECT_THROW(check_json_depth(std::string(kMaxJsonDepth + 1, '{')), ApiError);
  EXPECT_NO_THROW(check_json_depth("\"" + std::string(1000, '[') + "\""));
  EXPECT_NO_THROW(check_json_depth(R"(["\"[[[[["])"));
}

TEST(CompletionsSchema, BestOfFansOutCandidatesWithTheirLogprobs) {
  const PreparedCompletion p = prepare(R"({"prompt": ["a", "b"], "n": 2, "best_of": 3})");
  ASSERT_EQ(p.requests.size(), 6u);
  EXPECT_EQ(p.choice_prompt, (std::vector<int>{0, 0, 0, 1, 1, 1}));
  for (const Request& r : p.requests) EXPECT_EQ(r.logprobs, 0);
}

TEST(CompletionsSchema, ContextLimitMessageNamesTheCounts) {
  try {
    prepare(R"({"prompt": [1,2,3,4,5,6,7,8,9,10], "max_tokens": 60})");
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(std::string(e.what()),
              "This model's maximum context length is 64 tokens. However, you requested 70 "
              "tokens (10 in the prompt, 60 in the completion). Please reduce the length of "
              "the prompt or completion.");
    EXPECT_EQ(e.code, "context_length_exceeded");
  }
}

TEST(CompletionsSchema, DefaultsForAPlainPrompt) {
  PreparedCompletion p = prepare(R"({"model": "tiny", "prompt": "hi", "unknown_field": [1]})");
  ASSERT_EQ(p.requests.size(), 1u);
  const Request& r = p.requests[0];
  EXPECT_EQ(r.prompt, (std::vector<int>{testing::ByteTokenizer::kBos, 'h', 'i'}));
  EXPECT_EQ(r.max_tokens, 16);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_FALSE(r.sampling.seed.has_value());
  EXPECT_EQ(r.logprobs, -1);
  EXPECT_EQ(r.prompt_logprobs, -1);
  EXPECT_FALSE(p.body.stream);
  EXPECT_EQ(p.body.model, "tiny");
  EXPECT_EQ(p.prompts[0].text, "hi");
}

TEST(CompletionsSchema, NullsMeanDefaultsAndModelPathIsAccepted) {
  PreparedCompletion p = prepare(
      R"({"model": "/models/tiny", "prompt": "x", "max_tokens": null, "temperature": null,
          "stop": null, "logprobs": null, "n": null})");
  EXPECT_EQ(p.requests.at(0).max_tokens, 16);
  EXPECT_EQ(p.requests.at(0).logprobs, -1);
  EXPECT_TRUE(p.requests.at(0).stop.empty());
}

TEST(CompletionsSchema, SamplingFieldsAreCarriedOver) {
  PreparedCompletion p = prepare(
      R"({"prompt": "x", "temperature": 0, "top_p": 0.5, "top_k": 7, "min_p": 0.1, "seed": 42,
          "presence_penalty": 0.5, "frequency_penalty": -0.5, "repetition_penalty": 1.2,
          "logit_bias": {"65": -100, "66": 5.5}, "stop": ["\n", "END"], "ignore_eos": true,
          "max_tokens": 0, "stop_token_ids": [257]})");
  const Request& r = p.requests.at(0);
  EXPECT_EQ(r.sampling.temperature, 0.0f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.5f);
  EXPECT_EQ(r.sampling.top_k, 7);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_FLOAT_EQ(r.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.frequency_penalty, -0.5f);
  EXPECT_FLOAT_EQ(r.sampling.repetition_penalty, 1.2f);
  ASSERT_EQ(r.sampling.logit_bias.size(), 2u);
  EXPECT_EQ(r.sampling.logit_bias[0], (std::pair<int, float>{65, -100.0f}));
  EXPECT_EQ(r.sampling.logit_bias[1], (std::pair<int, float>{66, 5.5f}));
  EXPECT_EQ(r.stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_EQ(r.stop_token_ids, (std::vector<int>{257}));
  EXPECT_TRUE(r.ignore_eos);
  EXPECT_EQ(r.max_tokens, 0);
}

TEST(CompletionsSchema, EchoWithLogprobsAsksForPromptLogprobs) {
  PreparedCompletion p = prepare(R"({"prompt": [5, 6, 7], "echo": true, "logprobs": 1,
                                     "max_tokens": 0})");
  const Request& r = p.requests.at(0);
  EXPECT_EQ(r.prompt, (std::vector<int>{5, 6, 7}));  // token ids get no BOS
  EXPECT_EQ(r.logprobs, 1);
  EXPECT_EQ(r.prompt_logprobs, 1);
  EXPECT_EQ(p.prompts[0].text, "\x05\x06\x07");
  PreparedCompletion q = prepare(R"({"prompt": "ab", "logprobs": 0})");
  EXPECT_EQ(q.requests.at(0).logprobs, 0);
  EXPECT_EQ(q.requests.at(0).prompt_logprobs, -1);  // no echo: no prompt logprobs
}

TEST(CompletionsSchema, ListsOfPromptsAndNGiveChoicesInOrder) {
  PreparedCompletion p = prepare(R"({"prompt": ["a", "bc"], "n": 2, "seed": 10})");
  ASSERT_EQ(p.requests.size(), 4u);
  EXPECT_EQ(p.choice_prompt, (std::vector<int>{0, 0, 1, 1}));
  EXPECT_EQ(p.requests[1].prompt, (std::vector<int>{256, 'a'}));
  EXPECT_EQ(p.requests[2].prompt, (std::vector<int>{256, 'b', 'c'}));
  // The n samples of one prompt get different, reproducible seeds.
  EXPECT_EQ(p.requests[0].sampling.seed, 10u);
  EXPECT_EQ(p.requests[1].sampling.seed, 11u);
  EXPECT_EQ(p.requests[2].sampling.seed, 10u);

  PreparedCompletion t = prepare(R"({"prompt": [[1, 2], [3]]})");
  ASSERT_EQ(t.requests.size(), 2u);
  EXPECT_EQ(t.requests[1].prompt, (std::vector<int>{3}));
}

TEST(CompletionsSchema, StreamOptionsAndAddSpecialTokens) {
  PreparedCompletion p = prepare(
      R"({"prompt": "a", "stream": true, "stream_options": {"include_usage": true},
          "add_special_tokens": false, "stop": "z"})");
  EXPECT_TRUE(p.body.stream);
  EXPECT_TRUE(p.body.include_usage);
  EXPECT_EQ(p.requests.at(0).prompt, (std::vector<int>{'a'}));
  EXPECT_EQ(p.requests.at(0).stop, (std::vector<std::string>{"z"}));
}

TEST(CompletionsSchema, PromptExactlyAtTheLimitIsAccepted) {
  std::string ids = "[";
  for (int i = 0; i < 60; ++i) {
    if (i) ids += ",";
    ids += std::to_string(i);
  }
  ids += "]";
  PreparedCompletion p = prepare(R"({"prompt": )" + ids + R"(, "max_tokens": 4})");
  EXPECT_EQ(p.requests.at(0).prompt.size(), 60u);
  // A prompt filling the whole context is refused even without generation.
  std::string full = "[";
  for (int i = 0; i < 64; ++i) {
    if (i) full += ",";
    full += "1";
  }
  full += "]";
  EXPECT_THROW(prepare(R"({"prompt": )" + full + R"(, "max_tokens": 0})"), ApiError);
}

}  // namespace
}  // namespace xq
