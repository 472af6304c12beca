#include "server/completions_schema.h"

#include <algorithm>
#include <climits>

#include "server/json_params.h"
#include "server/param_support.h"

namespace xq {
namespace {

using nlohmann::json;

std::vector<int> parse_token_ids(const json& arr, const ModelLimits& limits) {
  std::vector<int> ids;
  ids.reserve(arr.size());
  for (const json& v : arr) {
    if (!v.is_number_integer() && !v.is_number_unsigned())
      throw invalid_request("'prompt' token ids must be integers", "prompt");
    auto id = as_int(v, 0, limits.vocab_size - 1);
    if (!id)
      throw invalid_request("Token id " + v.dump() + " in 'prompt' is out of vocabulary (0.." +
                                std::to_string(limits.vocab_size - 1) + ")",
                            "prompt");
    ids.push_back(static_cast<int>(*id));
  }
  if (ids.empty()) throw invalid_request("'prompt' must not be empty", "prompt");
  return ids;
}

PromptInput text_prompt(const json& v) {
  std::string s = v.get<std::string>();
  if (s.empty()) throw invalid_request("'prompt' must not be empty", "prompt");
  return PromptInput{std::move(s), {}};
}

// string | [int] | [string] | [[int]]; each entry of a list is its own prompt.
std::vector<PromptInput> parse_prompts(const json& obj, const ModelLimits& limits) {
  auto it = obj.find("prompt");
  if (it == obj.end() || it->is_null()) throw invalid_request("'prompt' is required", "prompt");
  const json& p = *it;
  if (p.is_string()) return {text_prompt(p)};
  const char* kTypes =
      "'prompt' must be a string, a list of token ids, a list of strings or a list of token-id "
      "lists";
  if (!p.is_array()) throw invalid_request(kTypes, "prompt");
  if (p.empty()) throw invalid_request("'prompt' must not be empty", "prompt");
  if (p[0].is_number()) return {PromptInput{std::nullopt, parse_token_ids(p, limits)}};
  if (p.size() > kMaxPromptsPerRequest)
    throw invalid_request("'prompt' holds " + std::to_string(p.size()) + " prompts; at most " +
                              std::to_string(kMaxPromptsPerRequest) + " are accepted per request",
                          "prompt");
  std::vector<PromptInput> prompts;
  for (const json& e : p) {
    if (e.is_string()) {
      prompts.push_back(text_prompt(e));
    } else if (e.is_array()) {
      prompts.push_back(PromptInput{std::nullopt, parse_token_ids(e, limits)});
    } else {
      throw invalid_request(kTypes, "prompt");
    }
  }
  return prompts;
}

std::vector<std::string> parse_stop(const json& obj) {
  auto it = obj.find("stop");
  if (it == obj.end() || it->is_null()) return {};
  if (it->is_string()) {
    std::string s = it->get<std::string>();
    return s.empty() ? std::vector<std::string>{} : std::vector<std::string>{s};
  }
  if (!it->is_array())
    throw invalid_request("'stop' must be a string or a list of strings", "stop");
  if (it->size() > kMaxStopStrings)
    throw invalid_request("'stop' takes at most " + std::to_string(kMaxStopStrings) + " strings",
                          "stop");
  std::vector<std::string> stop;
  for (const json& s : *it) {
    if (!s.is_string())
      throw invalid_request("'stop' must be a string or a list of strings", "stop");
    if (!s.get<std::string>().empty()) stop.push_back(s.get<std::string>());
  }
  return stop;
}

std::vector<int> parse_stop_token_ids(const json& obj, const ModelLimits& limits) {
  auto it = obj.find("stop_token_ids");
  if (it == obj.end() || it->is_null()) return {};
  if (!it->is_array())
    throw invalid_request("'stop_token_ids' must be a list of token ids", "stop_token_ids");
  std::vector<int> ids;
  for (const json& v : *it) {
    auto id = as_int(v, 0, limits.vocab_size - 1);
    if (!id || !(v.is_number_integer() || v.is_number_unsigned()))
      throw invalid_request("'stop_token_ids' entries must be token ids in [0, " +
                                std::to_string(limits.vocab_size) + ")",
                            "stop_token_ids");
    ids.push_back(static_cast<int>(*id));
  }
  return ids;
}

std::vector<std::pair<int, float>> parse_logit_bias(const json& obj, const ModelLimits& limits) {
  auto it = obj.find("logit_bias");
  if (it == obj.end() || it->is_null()) return {};
  if (!it->is_object())
    throw invalid_request("'logit_bias' must be an object of token id -> bias", "logit_bias");
  std::vector<std::pair<int, float>> bias;
  for (auto& [key, value] : it->items()) {
    int id = -1;
    // Digits only: stol would also take " 5" and "+5".
    const bool digits = !key.empty() && key.size() <= 10 &&
                        key.find_first_not_of("0123456789") == std::string::npos;
    if (digits && std::stoll(key) < limits.vocab_size) id = static_cast<int>(std::stoll(key));
    if (id < 0)
      throw invalid_request("'logit_bias' key '" + key + "' is not a token id in [0, " +
                                std::to_string(limits.vocab_size) + ")",
                            "logit_bias");
    if (!value.is_number() || value.get<double>() < -100.0 || value.get<double>() > 100.0)
      throw invalid_request("'logit_bias' values must be numbers in [-100, 100]", "logit_bias");
    bias.emplace_back(id, value.get<float>());
  }
  return bias;
}

SamplingParams parse_sampling(const json& j, const ModelLimits& limits) {
  SamplingParams s;
  if (auto v = get_number(j, "temperature", 0.0, 2.0)) s.temperature = static_cast<float>(*v);
  if (auto v = get_number(j, "top_p", 0.0, 1.0, true)) s.top_p = static_cast<float>(*v);
  if (auto v = get_int(j, "top_k", -1, INT_MAX)) s.top_k = static_cast<int>(*v);
  if (auto v = get_number(j, "min_p", 0.0, 1.0)) s.min_p = static_cast<float>(*v);
  if (auto v = get_number(j, "presence_penalty", -2.0, 2.0)) s.presence_penalty = *v;
  if (auto v = get_number(j, "frequency_penalty", -2.0, 2.0)) s.frequency_penalty = *v;
  if (auto v = get_number(j, "repetition_penalty", 0.0, 100.0, true))
    s.repetition_penalty = static_cast<float>(*v);
  if (auto v = get_int(j, "seed", INT64_MIN, INT64_MAX)) s.seed = static_cast<uint64_t>(*v);
  s.logit_bias = parse_logit_bias(j, limits);
  return s;
}

}  // namespace

void check_model_name(const std::optional<std::string>& model, const ModelLimits& limits) {
  if (!model) return;
  if (*model == limits.served_name) return;
  if (!limits.model_path.empty() && *model == limits.model_path) return;
  throw model_not_found(*model);
}

void parse_common_params(const json& j, const ModelLimits& limits, CompletionBody& b) {
  auto model = get_string(j, "model");
  check_model_name(model, limits);
  b.model = model.value_or(limits.served_name);
  b.n = static_cast<int>(get_int(j, "n", 1, kMaxChoicesPerPrompt).value_or(1));
  b.stream = get_bool(j, "stream").value_or(false);
  b.best_of = static_cast<int>(get_int(j, "best_of", 1, kMaxChoicesPerPrompt).value_or(b.n));
  if (b.best_of < b.n)
    throw invalid_request("'best_of' must be greater than or equal to 'n' (" + std::to_string(b.n) +
                              "), got " + std::to_string(b.best_of),
                          "best_of");
  if (b.stream && b.best_of > b.n)
    throw invalid_request("'best_of' larger than 'n' cannot be streamed", "best_of");
  if (auto it = j.find("stream_options"); it != j.end() && !it->is_null()) {
    if (!it->is_object())
      throw invalid_request("'stream_options' must be an object", "stream_options");
    if (!b.stream)
      throw invalid_request("'stream_options' is only allowed when 'stream' is true",
                            "stream_options");
    b.include_usage = get_bool(*it, "include_usage").value_or(false);
  }
  get_string(j, "user");  // accepted for compatibility; only its type is checked
  b.tokens_as_ids = get_bool(j, "return_tokens_as_token_ids").value_or(false);
  Request& r = b.base;
  r.sampling = parse_sampling(j, limits);
  r.stop = parse_stop(j);
  r.stop_token_ids = parse_stop_token_ids(j, limits);
  r.ignore_eos = get_bool(j, "ignore_eos").value_or(false);
  r.skip_special_tokens = get_bool(j, "skip_special_tokens").value_or(true);
  r.min_tokens = static_cast<int>(get_int(j, "min_tokens", 0, INT_MAX).value_or(0));
  r.include_stop_str_in_output = get_bool(j, "include_stop_str_in_output").value_or(false);
}

void check_min_tokens(const Request& r) {
  if (r.min_tokens > r.max_tokens)
    throw invalid_request("'min_tokens' (" + std::to_string(r.min_tokens) +
                              ") must be less than or equal to 'max_tokens' (" +
                              std::to_string(r.max_tokens) + ")",
                          "min_tokens");
}

namespace {

// n (or best_of) x prompts, against kMaxChoicesPerRequest.
void check_choice_count(const CompletionBody& b, size_t prompts) {
  const size_t choices = prompts * static_cast<size_t>(b.best_of);
  if (choices > kMaxChoicesPerRequest)
    throw invalid_request("this request asks for " + std::to_string(choices) + " choices (" +
                              std::string(b.best_of > b.n ? "best_of" : "n") + " " +
                              std::to_string(b.best_of) + " x " + std::to_string(prompts) +
                              " prompts); at most " + std::to_string(kMaxChoicesPerRequest) +
                              " are accepted per request",
                          b.best_of > b.n ? "best_of" : "n");
}

}  // namespace

CompletionBody parse_completion_body(std::string_view text, const ModelLimits& limits) {
  const json j = parse_json_object(text);
  reject_unsupported_params(j, Endpoint::kCompletions);
  CompletionBody b;
  parse_common_params(j, limits, b);
  b.prompts = parse_prompts(j, limits);
  check_choice_count(b, b.prompts.size());
  b.echo = get_bool(j, "echo").value_or(false);
  if (auto v = get_int(j, "logprobs", 0, kMaxLogprobs)) b.logprobs = static_cast<int>(*v);
  b.add_special_tokens = get_bool(j, "add_special_tokens").value_or(true);
  Request& r = b.base;
  r.max_tokens = static_cast<int>(get_int(j, "max_tokens", 0, INT_MAX).value_or(16));
  r.logprobs = b.logprobs.value_or(-1);
  r.prompt_logprobs = b.echo && b.logprobs ? *b.logprobs : -1;
  check_min_tokens(r);
  return b;
}

void check_context_length(int64_t prompt_len, int max_tokens, const ModelLimits& limits,
                          const char* param) {
  const int64_t total = prompt_len + max_tokens;
  const std::string where = std::string(param) == "messages" ? "messages" : "prompt";
  const std::string head = "This model's maximum context length is " +
                           std::to_string(limits.max_model_len) + " tokens. However, ";
  // The engine needs one free position even when nothing is generated.
  if (total <= limits.max_model_len && prompt_len >= limits.max_model_len)
    throw invalid_request(head + "your " + where + " has " + std::to_string(prompt_len) +
                              " tokens, and it must be shorter than the context length (one "
                              "position stays free for the next token). Please reduce the "
                              "length of the " +
                              where + ".",
                          param, "context_length_exceeded");
  if (total > limits.max_model_len)
    throw invalid_request(
        head + "you requested " + std::to_string(total) + " tokens (" + std::to_string(prompt_len) +
            " in the " + where + ", " + std::to_string(max_tokens) +
            " in the completion). Please reduce the length of the " + where + " or completion.",
        param, "context_length_exceeded");
}

void fan_out_choices(PreparedCompletion& out) {
  const CompletionBody& body = out.body;
  for (size_t i = 0; i < out.prompts.size(); ++i) {
    for (int k = 0; k < body.best_of; ++k) {
      Request r = body.base;
      r.prompt = out.prompts[i].ids;
      // Ranking best_of candidates needs each sampled token's logprob.
      if (body.best_of > body.n) r.logprobs = std::max(r.logprobs, 0);
      // n samples of one prompt under one seed must still differ, reproducibly.
      if (r.sampling.seed) *r.sampling.seed += static_cast<uint64_t>(k);
      out.requests.push_back(std::move(r));
      out.choice_prompt.push_back(static_cast<int>(i));
    }
  }
}

PreparedCompletion prepare_completion(CompletionBody body, const Tokenizer& tok,
                                      const ModelLimits& limits) {
  PreparedCompletion out;
  for (const PromptInput& p : body.prompts) {
    PreparedPrompt pp;
    if (p.text) {
      pp.ids = tok.encode(*p.text, body.add_special_tokens);
      pp.text = *p.text;
      if (pp.ids.empty()) throw invalid_request("'prompt' must not be empty", "prompt");
    } else {
      pp.ids = p.ids;
      pp.text = tok.decode(pp.ids, false);  // invalid UTF-8 is replaced when written
    }
    check_context_length(static_cast<int64_t>(pp.ids.size()), body.base.max_tokens, limits,
                         "prompt");
    out.prompts.push_back(std::move(pp));
  }
  out.body = std::move(body);
  fan_out_choices(out);
  return out;
}

}  // namespace xq
