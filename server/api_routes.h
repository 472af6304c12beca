// The API's routes as functions from request to reply: /health, /v1/models, /v1/completions,
// /v1/chat/completions, /tokenize, /detokenize, /metrics, with Bearer authentication on /v1/*.
#pragma once

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
};

Router make_api_router(ApiContext& ctx);

// Throws 401 unless `authorization` is "Bearer <key>" (no check when key is empty).
void check_bearer(const std::string& authorization, const std::string& key);

HttpReply health_reply();
HttpReply models_reply(const ModelLimits& limits, int64_t created);
HttpReply tokenize_reply(std::string_view body, const Tokenizer& tok, const ModelLimits& limits);
HttpReply detokenize_reply(std::string_view body, const Tokenizer& tok, const ModelLimits& limits);
// Validates the body and prepares the job; throws ApiError.
std::shared_ptr<CompletionJob> completion_job(std::string_view body, const Tokenizer& tok,
                                              const ModelLimits& limits, CompletionMeta meta);

// The same for /v1/chat/completions (meta.id "chatcmpl-...").
std::shared_ptr<CompletionJob> chat_job(std::string_view body, const Tokenizer& tok,
                                        const ChatTemplateEnv& chat, const ModelLimits& limits,
                                        CompletionMeta meta);

}  // namespace xq
