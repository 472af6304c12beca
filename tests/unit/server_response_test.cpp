// The /v1/completions response: JSON and SSE shapes, echo with prompt logprobs as
// lm-evaluation-harness reads them, usage, choice order, engine errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/completions_response.h"
#include "server_byte_tokenizer.h"

namespace xq {
namespace {

using nlohmann::json;

const testing::ByteTokenizer kTok;
const ModelLimits kLimits{"tiny", "", 258, 64};

PreparedCompletion prepare(const std::string& body) {
  return prepare_completion(parse_completion_body(body, kLimits), kTok, kLimits);
}

GeneratedToken token(int id, float logprob, std::vector<std::pair<int, float>> top = {}) {
  return GeneratedToken{id, std::string(1, static_cast<char>(id)),
                        TokenLogprob{id, logprob, std::move(top)}};
}

RequestEvent step(std::vector<GeneratedToken> tokens, std::string text) {
  RequestEvent ev;
  ev.tokens = std::move(tokens);
  ev.text = std::move(text);
  return ev;
}

RequestEvent last(RequestEvent ev, const std::string& reason) {
  ev.finished = true;
  ev.finish_reason = reason;
  return ev;
}

// The JSON payloads of SSE frames ("data: ...\n\n").
std::vector<json> payloads(const std::vector<std::string>& frames) {
  std::vector<json> out;
  for (const std::string& f : frames) {
    EXPECT_EQ(f.rfind("data: ", 0), 0u) << f;
    EXPECT_EQ(f.substr(f.size() - 2), "\n\n");
    const std::string body = f.substr(6, f.size() - 8);
    out.push_back(body == "[DONE]" ? json("[DONE]") : json::parse(body));
  }
  return out;
}

TEST(CompletionResponse, NonStreamingShapeAndUsage) {
  PreparedCompletion p = prepare(R"({"prompt": "hi", "max_tokens": 3})");
  CompletionAssembler as({"cmpl-1", 1700000000, "tiny"}, p, kTok);
  EXPECT_TRUE(as.on_event(0, step({token('a', -0.1f), token('b', -0.2f)}, "ab")).empty());
  EXPECT_FALSE(as.done());
  as.on_event(0, last(step({token('c', -0.3f)}, "c"), "length"));
  ASSERT_TRUE(as.done());
  const json j = json::parse(as.final_body());
  EXPECT_EQ(j["id"], "cmpl-1");
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["created"], 1700000000);
  EXPECT_EQ(j["model"], "tiny");
  ASSERT_EQ(j["choices"].size(), 1u);
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][0]["text"], "abc");
  EXPECT_TRUE(j["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"],
            (json{{"prompt_tokens", 3}, {"completion_tokens", 3}, {"total_tokens", 6}}));
}

TEST(CompletionResponse, EchoLogprobsMaxTokensZeroAsLmEvalReadsIt) {
  PreparedCompletion p = prepare(R"({"prompt": [65, 66, 67], "echo": true, "logprobs": 1,
                                     "max_tokens": 0})");
  CompletionAssembler as({"cmpl-2", 1, "tiny"}, p, kTok);
  RequestEvent ev;
  ev.prompt_logprobs =
      std::vector<std::optional<TokenLogprob>>{std::nullopt, TokenLogprob{66, -1.5f, {{90, -0.5f}}},
                                               TokenLogprob{67, -0.25f, {{67, -0.25f}}}};
  as.on_event(0, last(ev, "length"));
  const json j = json::parse(as.final_body());
  const json& c = j["choices"][0];
  EXPECT_EQ(c["text"], "ABC");
  const json& lp = c["logprobs"];
  EXPECT_EQ(lp["tokens"], (json{"A", "B", "C"}));
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_FLOAT_EQ(lp["token_logprobs"][1].get<float>(), -1.5f);
  EXPECT_FLOAT_EQ(lp["token_logprobs"][2].get<float>(), -0.25f);
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  // The top entry and the prompt token itself are both listed.
  EXPECT_EQ(lp["top_logprobs"][1].size(), 2u);
  EXPECT_FLOAT_EQ(lp["top_logprobs"][1]["Z"].get<float>(), -0.5f);
  EXPECT_FLOAT_EQ(lp["top_logprobs"][1]["B"].get<float>(), -1.5f);
  EXPECT_EQ(lp["top_logprobs"][2].size(), 1u);
  EXPECT_EQ(lp["text_offset"], (json{0, 1, 2}));
  EXPECT_EQ(j["usage"]["completion_tokens"], 0);
  EXPECT_EQ(j["usage"]["prompt_tokens"], 3);
}

TEST(CompletionResponse, EchoedGeneratedTokensContinueTheOffsets) {
  PreparedCompletion p = prepare(R"({"prompt": [72, 73], "echo": true, "logprobs": 0,
                                     "max_tokens": 1})");
  CompletionAssembler as({"cmpl-3", 1, "tiny"}, p, kTok);
  RequestEvent ev = step({token('!', -2.0f)}, "!");
  ev.prompt_logprobs =
      std::vector<std::optional<TokenLogprob>>{std::nullopt, TokenLogprob{73, -3.0f, {}}};
  as.on_event(0, last(ev, "length"));
  const json c = json::parse(as.final_body())["choices"][0];
  EXPECT_EQ(c["text"], "HI!");
  EXPECT_EQ(c["logprobs"]["tokens"], (json{"H", "I", "!"}));
  EXPECT_EQ(c["logprobs"]["text_offset"], (json{0, 1, 2}));
  EXPECT_EQ(c["logprobs"]["top_logprobs"][2], (json{{"!", -2.0}}));
}

TEST(CompletionResponse, StreamingChunksThenUsageThenDone) {
  PreparedCompletion p = prepare(R"({"prompt": "x", "stream": true,
                                     "stream_options": {"include_usage": true}})");
  CompletionAssembler as({"cmpl-4", 5, "tiny"}, p, kTok);
  std::vector<json> a = payloads(as.on_event(0, step({token('h', -1)}, "h")));
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0]["object"], "text_completion");
  EXPECT_EQ(a[0]["id"], "cmpl-4");
  EXPECT_EQ(a[0]["choices"][0]["text"], "h");
  EXPECT_TRUE(a[0]["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(a[0]["usage"].is_null());
  // A step that releases no text (held back for a stop string) sends nothing.
  EXPECT_TRUE(as.on_event(0, step({token('e', -1)}, "")).empty());
  std::vector<json> b = payloads(as.on_event(0, last(step({token('y', -1)}, "ey"), "stop")));
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0]["choices"][0]["text"], "ey");
  EXPECT_EQ(b[0]["choices"][0]["finish_reason"], "stop");
  ASSERT_TRUE(as.done());
  std::vector<json> end = payloads(as.closing_frames());
  ASSERT_EQ(end.size(), 2u);
  EXPECT_TRUE(end[0]["choices"].empty());
  EXPECT_EQ(end[0]["usage"]["completion_tokens"], 3);
  EXPECT_EQ(end[0]["usage"]["prompt_tokens"], 2);
  EXPECT_EQ(end[1], "[DONE]");
}

TEST(CompletionResponse, StreamingWithoutUsageEndsWithDoneOnly) {
  PreparedCompletion p = prepare(R"({"prompt": "x", "stream": true, "echo": true})");
  CompletionAssembler as({"cmpl-5", 5, "tiny"}, p, kTok);
  std::vector<json> a = payloads(as.on_event(0, last(step({token('z', -1)}, "z"), "length")));
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0]["choices"][0]["text"], "xz");  // the echoed prompt comes first
  EXPECT_FALSE(a[0].contains("usage"));
  std::vector<json> end = payloads(as.closing_frames());
  ASSERT_EQ(end.size(), 1u);
  EXPECT_EQ(end[0], "[DONE]");
}

TEST(CompletionResponse, ChoicesAreAssembledInOrderWhateverOrderTheyFinish) {
  PreparedCompletion p = prepare(R"({"prompt": ["a", "bb"], "n": 2, "max_tokens": 1})");
  CompletionAssembler as({"cmpl-6", 5, "tiny"}, p, kTok);
  for (int i : {3, 1, 0, 2})
    as.on_event(i, last(step({token('0' + i, -1)}, std::string(1, '0' + i)), "length"));
  ASSERT_TRUE(as.done());
  const json j = json::parse(as.final_body());
  ASSERT_EQ(j["choices"].size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(j["choices"][i]["index"], i);
    EXPECT_EQ(j["choices"][i]["text"], std::string(1, '0' + i));
  }
  // Prompts count once each, whatever n is: (1 + 1) + (1 + 2) prompt tokens.
  EXPECT_EQ(j["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(j["usage"]["completion_tokens"], 4);
}

TEST(CompletionResponse, StreamedLogprobsCoverOnlyNewTokens) {
  PreparedCompletion p = prepare(R"({"prompt": "x", "stream": true, "logprobs": 2})");
  CompletionAssembler as({"cmpl-7", 5, "tiny"}, p, kTok);
  json a = payloads(as.on_event(0, step({token('a', -1, {{'a', -1}, {'b', -2}})}, "a")))[0];
  EXPECT_EQ(a["choices"][0]["logprobs"]["tokens"], (json{"a"}));
  EXPECT_EQ(a["choices"][0]["logprobs"]["top_logprobs"][0].size(), 2u);
  json b = payloads(as.on_event(0, last(step({token('c', -3, {{'d', -1}})}, "c"), "stop")))[0];
  EXPECT_EQ(b["choices"][0]["logprobs"]["tokens"], (json{"c"}));
  EXPECT_EQ(b["choices"][0]["logprobs"]["text_offset"], (json{1}));
}

TEST(CompletionResponse, EngineErrorBecomesAnInternalError) {
  PreparedCompletion p = prepare(R"({"prompt": "x"})");
  CompletionAssembler as({"cmpl-8", 5, "tiny"}, p, kTok);
  RequestEvent ev = last(step({}, ""), "error");
  ev.error = "out of cache memory";
  as.on_event(0, ev);
  ASSERT_TRUE(as.done());
  ASSERT_TRUE(as.error().has_value());
  EXPECT_EQ(as.error()->status, 500);
  const json e = json::parse(error_body(*as.error()));
  EXPECT_EQ(e["error"]["message"], "out of cache memory");
  EXPECT_EQ(e["error"]["type"], "internal_error");
}

TEST(CompletionResponse, InvalidUtf8IsReplacedNotThrown) {
  PreparedCompletion p = prepare(R"({"prompt": [200]})");
  CompletionAssembler as({"cmpl-9", 5, "tiny"}, p, kTok);
  as.on_event(0, last(step({}, "ok\xe2\x82"), "length"));  // a cut-off 3-byte character
  const json j = json::parse(as.final_body());
  EXPECT_EQ(j["choices"][0]["text"], "ok\xef\xbf\xbd");
}

TEST(CompletionResponse, Utf8LengthCountsCodePoints) {
  EXPECT_EQ(utf8_length("abc"), 3);
  EXPECT_EQ(utf8_length("h\xc3\xa9llo"), 5);
  EXPECT_EQ(utf8_length("\xe2\x82\xac"), 1);
}

}  // namespace
}  // namespace xq
