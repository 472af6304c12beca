// The /v1/chat/completions schema: which bodies are refused with which status and parameter
// (messages, roles, content parts, template errors), and how good ones are rendered.
#include <gtest/gtest.h>

#include "server/chat_schema.h"
#include "server_byte_tokenizer.h"

namespace xq {
namespace {

ModelLimits limits() { return ModelLimits{"tiny", "/models/tiny", 258, 128}; }

// Renders every role, tools and a kwarg, so tests can see what reached the template.
const char* kTemplate =
    "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    "{% if tools %}[tools:{{ tools | length }}]{% endif %}{% if flag %}[flag]{% endif %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}";

// Mistral-style: user and assistant must alternate.
const char* kAlternating =
    "{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant') }}{% endif %}"
    "{{ m.content }}{% endfor %}";

const testing::ByteTokenizer& tok() {
  static const testing::ByteTokenizer t;
  return t;
}

PreparedCompletion prepare(const std::string& body, const char* source = kTemplate) {
  const ChatTemplate tmpl(source);
  return prepare_chat(parse_chat_body(body, limits()), chat_template_env(&tmpl, tok()), tok(),
                      limits());
}

std::string rendered(const std::string& body) {
  const PreparedCompletion p = prepare(body);
  return p.prompts.at(0).text;
}

struct BadCase {
  const char* body;
  const char* param;
};

class BadChat : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadChat, IsRefusedNamingTheParam) {
  const BadCase& c = GetParam();
  try {
    prepare(c.body);
    FAIL() << "accepted: " << c.body;
  } catch (const ApiError& e) {
    // An unknown model is 404 model_not_found, everything else 400.
    EXPECT_EQ(e.status, std::string(c.param) == "model" ? 404 : 400)
        << c.body << " -> " << e.what();
    ASSERT_TRUE(e.param.has_value()) << c.body << " -> " << e.what();
    EXPECT_EQ(*e.param, c.param) << c.body << " -> " << e.what();
  }
}

#define USER R"("messages": [{"role": "user", "content": "hi"}])"

const BadCase kBad[] = {
    {"{}", "messages"},
    {R"({"messages": null})", "messages"},
    {R"({"messages": "hi"})", "messages"},
    {R"({"messages": []})", "messages"},
    {R"({"messages": [1]})", "messages[0]"},
    {R"({"messages": [{"content": "hi"}]})", "messages[0].role"},
    {R"({"messages": [{"role": 1, "content": "hi"}]})", "messages[0].role"},
    {R"({"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]})",
     "messages[1].role"},
    {R"({"messages": [{"role": "user"}]})", "messages[0].content"},
    {R"({"messages": [{"role": "system", "content": null}]})", "messages[0].content"},
    {R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content"},
    {R"({"messages": [{"role": "user", "content": {"text": "a"}}]})", "messages[0].content"},
    {R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})",
     "messages[0].content"},
    {R"({"messages": [{"role": "user", "content": [{"text": "a"}]}]})", "messages[0].content"},
    {R"({"messages": [{"role": "user", "content": ["a"]}]})", "messages[0].content"},
    {R"({"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]})",
     "messages[0].content"},
    {R"({"messages": [{"role": "user", "content": "a", "name": 3}]})", "messages[0].name"},
    {R"({"messages": [{"role": "tool", "content": "a", "tool_call_id": []}]})",
     "messages[0].tool_call_id"},
    {R"({"messages": [{"role": "assistant", "content": "a", "tool_calls": {}}]})",
     "messages[0].tool_calls"},
    {R"({"model": "other", )" USER "}", "model"},
    {"{" USER R"(, "logprobs": 1})", "logprobs"},
    {"{" USER R"(, "top_logprobs": 2})", "top_logprobs"},
    {"{" USER R"(, "logprobs": true, "top_logprobs": 21})", "top_logprobs"},
    {"{" USER R"(, "max_tokens": 0})", "max_tokens"},
    {"{" USER R"(, "max_completion_tokens": "5"})", "max_completion_tokens"},
    {"{" USER R"(, "max_tokens": 1000})", "messages"},  // context_length_exceeded
    {"{" USER R"(, "temperature": 3})", "temperature"},
    {"{" USER R"(, "top_k": -5})", "top_k"},
    {"{" USER R"(, "n": 0})", "n"},
    {"{" USER R"(, "stop": [1]})", "stop"},
    {"{" USER R"(, "seed": "s"})", "seed"},
    {"{" USER R"(, "logit_bias": {"999": 1}})", "logit_bias"},
    {"{" USER R"(, "stream_options": {"include_usage": true}})", "stream_options"},
    {"{" USER R"(, "tools": {}})", "tools"},
    {"{" USER R"(, "tools": [1]})", "tools"},
    {"{" USER R"(, "chat_template_kwargs": [1]})", "chat_template_kwargs"},
    {"{" USER R"(, "add_generation_prompt": "yes"})", "add_generation_prompt"},
    {"{" USER R"(, "continue_final_message": true, "add_generation_prompt": true})",
     "continue_final_message"},
    {"{" USER R"(, "skip_special_tokens": 0})", "skip_special_tokens"},
};

INSTANTIATE_TEST_SUITE_P(Table, BadChat, ::testing::ValuesIn(kBad));

TEST(ChatSchema, RendersMessagesWithBosAndGenerationPrompt) {
  EXPECT_EQ(rendered(R"({"messages": [{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": "hi"}], "extra": 1})"),
            "<s><system>be brief<user>hi<assistant>");
}

TEST(ChatSchema, PromptIsTokenizedWithoutAddingBosAgain) {
  const PreparedCompletion p = prepare(R"({"messages": [{"role": "user", "content": "x"}]})");
  // ByteTokenizer adds id 256 with special tokens; the template's "<s>" text is enough.
  const std::string text = "<s><user>x<assistant>";
  EXPECT_EQ(p.prompts.at(0).ids, std::vector<int>(text.begin(), text.end()));
  EXPECT_EQ(p.requests.at(0).prompt, p.prompts.at(0).ids);
}

TEST(ChatSchema, TextPartsAreJoinedAndNullAssistantContentIsEmpty) {
  EXPECT_EQ(rendered(R"({"messages": [
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
      {"role": "assistant", "content": null, "tool_calls": []},
      {"role": "tool", "content": "42", "tool_call_id": "c1"}]})"),
            "<s><user>a\nb<assistant><tool>42<assistant>");
}

TEST(ChatSchema, ToolsAndKwargsReachTheTemplate) {
  EXPECT_EQ(rendered(R"({"messages": [{"role": "user", "content": "q"}],
                         "tools": [{"type": "function", "function": {"name": "f"}}],
                         "chat_template_kwargs": {"flag": true},
                         "add_generation_prompt": false})"),
            "<s><user>q[tools:1][flag]");
}

TEST(ChatSchema, ContinueFinalMessageCutsAfterIt) {
  EXPECT_EQ(rendered(R"({"messages": [{"role": "user", "content": "q"},
                                      {"role": "assistant", "content": "The answer is"}],
                         "continue_final_message": true})"),
            "<s><user>q<assistant>The answer is");
}

TEST(ChatSchema, TemplateRaiseIsA400WithItsMessage) {
  try {
    prepare(R"({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})",
            kAlternating);
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_NE(std::string(e.what()).find("Conversation roles must alternate user/assistant"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(prepare(R"({"messages": [{"role": "user", "content": "a"},
                                     {"role": "assistant", "content": "b"}]})",
                    kAlternating)
                .prompts.at(0)
                .text,
            "ab");
}

TEST(ChatSchema, NoTemplateIsA400ThatSaysWhatToDo) {
  const ChatTemplateEnv env = chat_template_env(nullptr, tok());
  try {
    prepare_chat(parse_chat_body(R"({"messages": [{"role": "user", "content": "a"}]})", limits()),
                 env, tok(), limits());
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_NE(std::string(e.what()).find("pass --chat-template FILE"), std::string::npos);
  }
}

TEST(ChatSchema, SamplingLogprobsAndMaxTokens) {
  const PreparedCompletion p = prepare(
      R"({"messages": [{"role": "user", "content": "x"}], "n": 2, "seed": 5, "temperature": 0.5,
          "top_k": 3, "min_p": 0.2, "logprobs": true, "top_logprobs": 4, "max_tokens": 7,
          "max_completion_tokens": 9, "stop": "END", "stop_token_ids": [257],
          "ignore_eos": true, "user": "u"})");
  ASSERT_EQ(p.requests.size(), 2u);
  const Request& r = p.requests[1];
  EXPECT_EQ(r.max_tokens, 9);  // max_completion_tokens wins
  EXPECT_EQ(r.logprobs, 4);
  EXPECT_EQ(p.body.logprobs, 4);
  EXPECT_EQ(r.sampling.seed, 6u);
  EXPECT_EQ(r.sampling.top_k, 3);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.2f);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"END"}));
  EXPECT_EQ(r.stop_token_ids, (std::vector<int>{257}));
  EXPECT_TRUE(r.ignore_eos);

  const PreparedCompletion d = prepare(R"({"messages": [{"role": "user", "content": "x"}],
                                           "logprobs": true})");
  EXPECT_EQ(d.requests[0].logprobs, 0);
  // No max_tokens: whatever the context leaves.
  EXPECT_EQ(d.requests[0].max_tokens, 128 - static_cast<int>(d.prompts[0].ids.size()));
  const PreparedCompletion q = prepare(R"({"messages": [{"role": "user", "content": "x"}]})");
  EXPECT_EQ(q.requests[0].logprobs, -1);
  EXPECT_FALSE(q.body.logprobs.has_value());
}

}  // namespace
}  // namespace xq
