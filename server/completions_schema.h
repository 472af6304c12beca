// The /v1/completions request schema: parses and validates a JSON body into engine Requests,
// throwing ApiError (400/404) that names the offending parameter. Pure functions, no network.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "scheduler/request.h"
#include "server/openai_errors.h"

namespace xq {

// What the schema checks requests against.
struct ModelLimits {
  std::string served_name;
  std::string model_path;  // also accepted as `model`; empty: not accepted
  int vocab_size = 0;
  int max_model_len = 0;
};

// One prompt as the client wrote it: text, or token ids (then `text` is empty).
struct PromptInput {
  std::optional<std::string> text;
  std::vector<int> ids;
};

// The validated body, prompts not yet tokenized.
struct CompletionBody {
  std::string model;
  std::vector<PromptInput> prompts;
  int n = 1;
  int best_of = 1;  // candidates drawn per prompt; the n with the highest cumulative logprob return
  bool stream = false;
  bool include_usage = false;
  bool echo = false;
  std::optional<int> logprobs;  // top-n per token, 0..20
  // vLLM's extension: logprobs name tokens "token_id:<id>" instead of by their text, so that
  // a client can tell apart tokens whose texts are equal or not valid UTF-8.
  bool tokens_as_ids = false;
  bool add_special_tokens = true;
  Request base;  // sampling, max_tokens, stop, logprobs, ... shared by every choice
};

// A prompt ready to run: its ids, and the text that echo shows.
struct PreparedPrompt {
  std::vector<int> ids;
  std::string text;
};

// The body with its prompts tokenized and every choice's Request, in choice order
// (choice index = prompt index * n + sample index).
struct PreparedCompletion {
  CompletionBody body;
  std::vector<PreparedPrompt> prompts;
  std::vector<Request> requests;
  std::vector<int> choice_prompt;  // choice index -> prompt index
};

inline constexpr int kMaxLogprobs = 20;
inline constexpr int kMaxChoicesPerPrompt = 128;    // n and best_of
inline constexpr int kMaxPromptsPerRequest = 1024;  // entries of a batched `prompt`
// Sequences one request may start: best_of (or n) x prompts. Each holds a Request and, while it
// runs, cache; without a cap a 40 KiB body could ask for 640,000 of them.
inline constexpr int kMaxChoicesPerRequest = 1024;
inline constexpr int kMaxStopStrings = 4;

// Stage 1: JSON text -> CompletionBody. Checks types, ranges and the model name; token ids and
// logit_bias keys against the vocabulary.
CompletionBody parse_completion_body(std::string_view body, const ModelLimits& limits);

// Stage 2: tokenizes the prompts and checks each against the context limit.
PreparedCompletion prepare_completion(CompletionBody body, const Tokenizer& tok,
                                      const ModelLimits& limits);

// The parameters /v1/completions and /v1/chat/completions share: model, n, stream,
// stream_options, user, sampling (temperature, top_p, top_k, min_p, penalties, seed, logit_bias),
// stop, stop_token_ids, ignore_eos, skip_special_tokens. Fills `b` except prompts, echo,
// logprobs and max_tokens.
void parse_common_params(const nlohmann::json& j, const ModelLimits& limits, CompletionBody& b);

// Throws 400 context_length_exceeded unless prompt + max_tokens fit (with one free position).
void check_context_length(int64_t prompt_len, int max_tokens, const ModelLimits& limits,
                          const char* param);

// Fills out.requests and out.choice_prompt: body.best_of choices per prompt, seeds offset per
// sample.
void fan_out_choices(PreparedCompletion& out);

// Throws 400 naming min_tokens when it exceeds max_tokens.
void check_min_tokens(const Request& r);

// Checks `model` (absent: fine) against the served name; throws 404 model_not_found.
void check_model_name(const std::optional<std::string>& model, const ModelLimits& limits);

}  // namespace xq
