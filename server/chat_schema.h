// The /v1/chat/completions request schema: validates messages and the shared sampling
// parameters, renders the conversation with the model's chat template and tokenizes it.
// Throws ApiError (400/404) naming the offending parameter. Pure functions, no network.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/completions_schema.h"

namespace xq {

// The validated body; `messages` are normalized for the template (content is a string).
struct ChatBody {
  CompletionBody common;  // prompts empty until rendered; logprobs = top_logprobs when asked
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  nlohmann::ordered_json tools;            // null when absent
  nlohmann::ordered_json template_kwargs;  // chat_template_kwargs (object or null)
  bool add_generation_prompt = true;
  bool continue_final_message = false;
  bool max_tokens_given = false;  // otherwise whatever the context leaves
};

// What rendering needs besides the body; `tmpl` null means the model has none.
struct ChatTemplateEnv {
  const ChatTemplate* tmpl = nullptr;
  std::string unavailable_reason;  // why tmpl is null (a template that did not parse)
  std::string bos_token;
  std::string eos_token;
};

ChatBody parse_chat_body(std::string_view body, const ModelLimits& limits);

// The prompt text the template makes of the body (continue_final_message cut applied).
std::string render_chat(const ChatBody& body, const ChatTemplateEnv& env);

// Renders, tokenizes without adding special tokens again (the template wrote BOS), checks the
// context, and fans out the n choices.
PreparedCompletion prepare_chat(ChatBody body, const ChatTemplateEnv& env, const Tokenizer& tok,
                                const ModelLimits& limits);

// bos/eos token texts of a tokenizer ("" when it has none).
ChatTemplateEnv chat_template_env(const ChatTemplate* tmpl, const Tokenizer& tok);

}  // namespace xq
