#include "server/chat_schema.h"

#include <algorithm>
#include <climits>

#include "server/json_params.h"
#include "server/param_support.h"

namespace xq {
namespace {

using nlohmann::json;
using ojson = nlohmann::ordered_json;

std::string at(size_t i, const char* field = nullptr) {
  std::string p = "messages[" + std::to_string(i) + "]";
  if (field) p += std::string(".") + field;
  return p;
}

// A message's content as the templates expect it: a string. Text parts are joined with "\n" (as
// vLLM does for templates that take string content); a missing or null content (an assistant
// turn that only calls tools) becomes "".
std::string content_text(const ojson& msg, size_t i, const std::string& role) {
  auto it = msg.find("content");
  if (it == msg.end() || it->is_null()) {
    if (role == "assistant") return "";
    throw invalid_request("'" + at(i, "content") + "' is required for role '" + role + "'",
                          at(i, "content"));
  }
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array())
    throw invalid_request("'" + at(i, "content") + "' must be a string or a list of content parts",
                          at(i, "content"));
  std::string text;
  for (size_t k = 0; k < it->size(); ++k) {
    const ojson& part = (*it)[k];
    auto type = part.is_object() ? part.find("type") : part.end();
    if (!part.is_object() || type == part.end() || !type->is_string())
      throw invalid_request("'" + at(i, "content") + "' parts must be objects with a 'type'",
                            at(i, "content"));
    if (type->get<std::string>() != "text")
      throw invalid_request("'" + at(i, "content") + "' part of type '" + type->get<std::string>() +
                                "' is not supported: this model takes only 'text' parts",
                            at(i, "content"));
    auto t = part.find("text");
    if (t == part.end() || !t->is_string())
      throw invalid_request("'" + at(i, "content") + "' text parts need a string 'text'",
                            at(i, "content"));
    if (k > 0) text += "\n";
    text += t->get<std::string>();
  }
  return text;
}

ojson parse_messages(const ojson& j) {
  auto it = j.find("messages");
  if (it == j.end() || it->is_null()) throw invalid_request("'messages' is required", "messages");
  if (!it->is_array()) throw invalid_request("'messages' must be a list of messages", "messages");
  if (it->empty()) throw invalid_request("'messages' must not be empty", "messages");
  ojson out = ojson::array();
  for (size_t i = 0; i < it->size(); ++i) {
    const ojson& m = (*it)[i];
    if (!m.is_object()) throw invalid_request("'" + at(i) + "' must be an object", at(i));
    auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      throw invalid_request("'" + at(i, "role") + "' is required and must be a string",
                            at(i, "role"));
    const std::string r = role->get<std::string>();
    if (r != "system" && r != "user" && r != "assistant" && r != "tool")
      throw invalid_request(
          "'" + at(i, "role") + "' must be one of system, user, assistant, tool; got '" + r + "'",
          at(i, "role"));
    for (const char* key : {"name", "tool_call_id"}) {
      auto f = m.find(key);
      if (f != m.end() && !f->is_null() && !f->is_string())
        throw invalid_request("'" + at(i, key) + "' must be a string", at(i, key));
    }
    if (auto f = m.find("tool_calls"); f != m.end() && !f->is_null() && !f->is_array())
      throw invalid_request("'" + at(i, "tool_calls") + "' must be a list", at(i, "tool_calls"));
    ojson msg = m;  // other fields (tool_calls, name, ...) reach the template as sent
    msg["content"] = content_text(m, i, r);
    out.push_back(std::move(msg));
  }
  return out;
}

ojson parse_tools(const ojson& j) {
  auto it = j.find("tools");
  if (it == j.end() || it->is_null()) return nullptr;
  if (!it->is_array()) throw invalid_request("'tools' must be a list of tools", "tools");
  for (const ojson& t : *it)
    if (!t.is_object()) throw invalid_request("'tools' entries must be objects", "tools");
  return *it;
}

// Extra variables for the template; those the server sets itself cannot be overridden.
ojson parse_template_kwargs(const ojson& j) {
  auto it = j.find("chat_template_kwargs");
  if (it == j.end() || it->is_null()) return nullptr;
  if (!it->is_object())
    throw invalid_request("'chat_template_kwargs' must be an object", "chat_template_kwargs");
  for (const char* reserved :
       {"messages", "tools", "bos_token", "eos_token", "add_generation_prompt"}) {
    if (it->contains(reserved))
      throw invalid_request(std::string("'chat_template_kwargs' may not set '") + reserved +
                                "': the server sets it from the request and the model",
                            "chat_template_kwargs");
  }
  return *it;
}

std::string strip_spaces(const std::string& s) {
  static constexpr const char* kSpace = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(kSpace);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(kSpace) - b + 1);
}

// The final message's content cut where the template put it: what the model continues.
std::string cut_after_final_message(const std::string& rendered, const std::string& content) {
  for (const std::string& needle : {content, strip_spaces(content)}) {
    const size_t pos = rendered.rfind(needle);
    if (pos != std::string::npos) return rendered.substr(0, pos + needle.size());
  }
  throw invalid_request(
      "continue_final_message: the chat template does not show the final message's content",
      "continue_final_message");
}

}  // namespace

ChatBody parse_chat_body(std::string_view text, const ModelLimits& limits) {
  const json j = parse_json_object(text);
  reject_unsupported_params(j, Endpoint::kChat);
  ChatBody b;
  CompletionBody& c = b.common;
  parse_common_params(j, limits, c);
  // Parsed again keeping key order: tools and messages reach the template (tojson) as sent.
  const ojson oj = parse_ordered_json_object(text);
  b.messages = parse_messages(oj);
  b.tools = parse_tools(oj);
  b.template_kwargs = parse_template_kwargs(oj);
  b.continue_final_message = get_bool(j, "continue_final_message").value_or(false);
  b.add_generation_prompt =
      get_bool(j, "add_generation_prompt").value_or(!b.continue_final_message);
  if (b.add_generation_prompt && b.continue_final_message)
    throw invalid_request(
        "'continue_final_message' and 'add_generation_prompt' cannot both be true",
        "continue_final_message");

  const bool logprobs = get_bool(j, "logprobs").value_or(false);
  auto top = get_int(j, "top_logprobs", 0, kMaxLogprobs);
  if (top && !logprobs)
    throw invalid_request("'top_logprobs' needs 'logprobs' set to true", "top_logprobs");
  if (logprobs) c.logprobs = static_cast<int>(top.value_or(0));

  Request& r = c.base;
  // max_completion_tokens is the newer name; it wins when both are sent.
  auto max_tokens = get_int(j, "max_completion_tokens", 1, INT_MAX);
  if (!max_tokens) max_tokens = get_int(j, "max_tokens", 1, INT_MAX);
  b.max_tokens_given = max_tokens.has_value();
  r.max_tokens = static_cast<int>(max_tokens.value_or(0));
  r.logprobs = c.logprobs.value_or(-1);
  c.add_special_tokens = false;
  return b;
}

std::string render_chat(const ChatBody& body, const ChatTemplateEnv& env) {
  if (!env.tmpl) {
    std::string msg = "this model has no chat template; pass --chat-template FILE";
    if (!env.unavailable_reason.empty()) msg += " (" + env.unavailable_reason + ")";
    throw invalid_request(msg, "messages");
  }
  // The request's kwargs first: what the server sets below wins over them.
  ojson ctx = body.template_kwargs.is_object() ? body.template_kwargs : ojson::object();
  ctx["messages"] = body.messages;
  ctx["add_generation_prompt"] = body.add_generation_prompt;
  ctx["bos_token"] = env.bos_token;
  ctx["eos_token"] = env.eos_token;
  if (!body.tools.is_null()) ctx["tools"] = body.tools;
  std::string text;
  try {
    text = env.tmpl->render_ordered(ctx);
  } catch (const TemplateError& e) {
    throw invalid_request(std::string("chat template error: ") + e.what(), "messages");
  }
  if (body.continue_final_message)
    text = cut_after_final_message(text, body.messages.back()["content"].get<std::string>());
  return text;
}

PreparedCompletion prepare_chat(ChatBody body, const ChatTemplateEnv& env, const Tokenizer& tok,
                                const ModelLimits& limits) {
  PreparedCompletion out;
  PreparedPrompt pp;
  pp.text = render_chat(body, env);
  pp.ids = tok.encode(pp.text, false);
  if (pp.ids.empty())
    throw invalid_request("the chat template rendered an empty prompt", "messages");
  const auto prompt_len = static_cast<int64_t>(pp.ids.size());
  Request& r = body.common.base;
  // As in vLLM, no max_tokens means whatever room the context leaves.
  if (!body.max_tokens_given)
    r.max_tokens = static_cast<int>(std::max<int64_t>(limits.max_model_len - prompt_len, 0));
  check_context_length(prompt_len, r.max_tokens, limits, "messages");
  check_min_tokens(r);
  out.prompts.push_back(std::move(pp));
  out.body = std::move(body.common);
  fan_out_choices(out);
  return out;
}

ChatTemplateEnv chat_template_env(const ChatTemplate* tmpl, const Tokenizer& tok) {
  ChatTemplateEnv env;
  env.tmpl = tmpl;
  if (tok.bos_id() >= 0) env.bos_token = tok.token_bytes(tok.bos_id());
  if (!tok.eos_ids().empty()) env.eos_token = tok.token_bytes(tok.eos_ids().front());
  return env;
}

}  // namespace xq
