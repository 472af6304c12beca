// The API's routes as functions from request to reply: /health, /v1/models, /v1/completions,
// /v1/chat/completions, /tokenize, /detokenize, /metrics, with Bearer authentication on /v1/*.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <string_view>

#include "engine/tokenizer/tokenizer.h"
#include "scheduler/engine_loop.h"
#include "server/chat_schema.h"
#include "server/completions_schema.h"
#include "server/metrics.h"
#include "server/router.h"

namespace xq {

// Random ids for responses ("cmpl-<32 hex>"); thread-safe.
class IdSource {
 public:
  explicit IdSource(uint64_t seed);
  std::string next(const std::string& prefix);

 private:
  std::mutex mu_;
  std::mt19937_64 rng_;
};

// What the routes need; owned by main, outlives the router.
struct ApiContext {
  const Tokenizer* tokenizer = nullptr;
  ModelLimits limits;
  ChatTemplateEnv chat;              // the chat template (if any) and BOS/EOS texts
  std::string api_key;               // empty: no authentication
  EngineLoop* loop = nullptr;        // for /metrics' queue gauges
  ServerMetrics* metrics = nullptr;  // null: no /metrics route
  IdSource* ids = nullptr;
  int64_t started = 0;  // unix time, the model's `created`
  // /health fails once the engine has had work waiting this long without finishing a step.
  std::chrono::milliseconds health_stall{120'000};  // --engine-stall-timeout
};

Router make_api_router(ApiContext& ctx);

// Throws 401 unless `authorization` is "Bearer <key>" (no check when key is empty).
void check_bearer(const std::string& authorization, const std::string& key);

// 200, or 503 naming `problem` (the engine thread died or stalled).
HttpReply health_reply(const std::string& problem = {});
HttpReply models_reply(const ModelLimits& limits, int64_t created);
// GET /v1/models/{id}: the model when `id` names it, else 404.
HttpReply model_reply(const std::string& id, const ModelLimits& limits, int64_t created);
// A "prompt", or chat "messages" rendered with the chat template first (as vLLM's /tokenize).
HttpReply tokenize_reply(std::string_view body, const Tokenizer& tok, const ModelLimits& limits,
                         const ChatTemplateEnv& chat = {});
HttpReply detokenize_reply(std::string_view body, const Tokenizer& tok, const ModelLimits& limits);
// Validates the body and prepares the job; throws ApiError.
std::shared_ptr<CompletionJob> completion_job(std::string_view body, const Tokenizer& tok,
                                              const ModelLimits& limits, CompletionMeta meta);

// The same for /v1/chat/completions (meta.id "chatcmpl-...").
std::shared_ptr<CompletionJob> chat_job(std::string_view body, const Tokenizer& tok,
                                        const ChatTemplateEnv& chat, const ModelLimits& limits,
                                        CompletionMeta meta);

}  // namespace xq
