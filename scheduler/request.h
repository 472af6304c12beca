// Request and RequestEvent: what the server hands the scheduler, and what comes back per step.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/sampler.h"

namespace xq {

struct Request {
  std::vector<int> prompt;
  SamplingParams sampling;
  int max_tokens = 16;                 // may be 0 (prompt logprobs only)
  std::vector<std::string> stop;       // stop strings: generation ends before them
  std::vector<int> stop_token_ids;
  bool ignore_eos = false;
  // EOS and stop_token_ids cannot be drawn, and stop strings do not end the text, before this
  // many tokens are generated (vLLM's min_tokens).
  int min_tokens = 0;
  bool include_stop_str_in_output = false;  // the matched stop string (or stop token) stays
  int logprobs = -1;                   // top-n logprobs per generated token; -1: none
  int prompt_logprobs = -1;            // top-n logprobs per prompt token; -1: none
  bool skip_special_tokens = true;
  // Tokens per event after the first (which is sent at once): a stream's chunk size. The last
  // event carries whatever is left. 1: one event per token.
  int stream_interval = 1;
};

struct GeneratedToken {
  int id = -1;
  std::string text;  // the token's own text (its bytes, UTF-8 sanitized)
  std::optional<TokenLogprob> logprob;
};

// Everything that happened to one request in one engine step. The first event of a request
// carries the prompt logprobs (when asked); the last has `finished` set.
struct RequestEvent {
  std::vector<GeneratedToken> tokens;  // generated this step
  std::string text;                    // text released this step (stop strings cut, UTF-8 whole)
  std::optional<std::vector<std::optional<TokenLogprob>>> prompt_logprobs;  // first is nullopt
  bool finished = false;
  std::string finish_reason;  // "stop" | "length" | "abort" | "error"
  std::string error;          // for "error"
  int error_status = 500;     // the HTTP status the error answers with (503: shutting down)
  // What ended a "stop": the stop string matched, or the stop_token_ids entry drawn (both unset
  // for EOS), vLLM's `stop_reason`.
  std::optional<std::string> stop_str;
  std::optional<int> stop_token;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  // Engine-thread clock readings for latency metrics, set on the last event: when the request was
  // submitted, when its first token was sampled (epoch if none was), and when it finished.
  std::chrono::steady_clock::time_point arrival, first_token, finished_at;
};

// Called on the engine thread; must not block.
using EventSink = std::function<void(RequestEvent)>;

}  // namespace xq
