// Sequence: one request's state inside the scheduler (tokens, cache, sampler, output).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "engine/cache/cache_format.h"
#include "engine/sampler.h"
#include "scheduler/event_batcher.h"
#include "scheduler/output_processor.h"
#include "scheduler/request.h"

namespace xq {

struct Sequence {
  uint64_t id = 0;
  Request req;
  EventSink sink;
  std::vector<int> tokens;  // prompt followed by generated tokens
  int prompt_len = 0;
  int num_cached = 0;       // tokens already in the cache
  int64_t blocks = 0;       // cache blocks held (BlockManager)
  int preemptions = 0;
  std::unique_ptr<SequenceCache> cache;
  std::optional<Sampler> sampler;
  std::optional<OutputProcessor> output;
  std::vector<int> min_tokens_banned;  // EOS and stop ids, not drawn before req.min_tokens
  EventBatcher batcher;  // tokens generated but not yet sent (--stream-interval)
  bool prompt_logprobs_sent = false;
  std::vector<std::optional<TokenLogprob>> prompt_logprobs;  // filled while prefilling
  std::chrono::steady_clock::time_point arrival;
  std::chrono::steady_clock::time_point first_token;  // epoch until one is sampled

  int num_generated() const { return static_cast<int>(tokens.size()) - prompt_len; }
  // Tokens waiting to go through the model: the (rest of the) prompt, or the last sample.
  int pending() const { return static_cast<int>(tokens.size()) - num_cached; }
  bool wants_prompt_logprobs() const { return req.prompt_logprobs >= 0 && !prompt_logprobs_sent; }
};

}  // namespace xq
