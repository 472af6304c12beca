#include "server/api_routes.h"

#include <chrono>
#include <nlohmann/json.hpp>

#include "server/chat_response.h"
#include "server/json_params.h"

namespace xq {

using ojson = nlohmann::ordered_json;

IdSource::IdSource(uint64_t seed) : rng_(seed) {}

std::string IdSource::next(const std::string& prefix) {
  std::lock_guard lock(mu_);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = prefix;
  for (int word = 0; word < 2; ++word) {
    uint64_t bits = rng_();
    for (int i = 0; i < 16; ++i, bits >>= 4) id += kHex[bits & 15];
  }
  return id;
}

void check_bearer(const std::string& authorization, const std::string& key) {
  if (key.empty()) return;
  static constexpr std::string_view kScheme = "Bearer ";
  if (authorization.size() != kScheme.size() + key.size() ||
      authorization.compare(0, kScheme.size(), kScheme) != 0)
    throw unauthorized();
  // Compare every byte so the time taken does not tell how much of the key matched.
  unsigned char diff = 0;
  for (size_t i = 0; i < key.size(); ++i)
    diff |= static_cast<unsigned char>(authorization[kScheme.size() + i] ^ key[i]);
  if (diff != 0) throw unauthorized();
}

HttpReply health_reply(const std::string& problem) {
  if (problem.empty()) return json_reply(R"({"status":"ok"})");
  return error_reply(unavailable(problem));
}

namespace {

ojson model_object(const ModelLimits& limits, int64_t created) {
  return {{"id", limits.served_name},
          {"object", "model"},
          {"created", created},
          {"owned_by", "xquant-server"},
          {"root", limits.model_path},
          {"parent", nullptr},
          {"max_model_len", limits.max_model_len}};
}

}  // namespace

HttpReply models_reply(const ModelLimits& limits, int64_t created) {
  return json_reply(
      dump_json({{"object", "list"}, {"data", ojson::array({model_object(limits, created)})}}));
}

HttpReply model_reply(const std::string& id, const ModelLimits& limits, int64_t created) {
  check_model_name(id, limits);
  return json_reply(dump_json(model_object(limits, created)));
}

HttpReply tokenize_reply(std::string_view body, const Tokenizer& tok, const ModelLimits& limits,
                         const ChatTemplateEnv& chat) {
  const nlohmann::json j = parse_json_object(body);
  check_model_name(get_string(j, "model"), limits);
  std::optional<std::string> prompt;
  bool special = true;
  if (j.contains("messages")) {
    if (j.contains("prompt"))
      throw invalid_request("send 'prompt' or 'messages', not both", "messages");
    prompt = render_chat(parse_chat_body(body, limits), chat);
    special = false;  // the template wrote BOS
  } else {
    prompt = get_string(j, "prompt");
  }
  if (!prompt)
    throw invalid_request("'prompt' (a string) or 'messages' (a chat) is required", "prompt");
  special = get_bool(j, "add_special_tokens").value_or(special);
  const std::vector<int> ids = tok.encode(*prompt, special);
  return json_reply(
      dump_json({{"count", ids.size()}, {"max_model_len", limits.max_model_len}, {"tokens", ids}}));
}

HttpReply detokenize_reply(std::string_view body, const Tokenizer& tok, const ModelLimits& limits) {
  const nlohmann::json j = parse_json_object(body);
  check_model_name(get_string(j, "model"), limits);
  auto it = j.find("tokens");
  if (it == j.end() || !it->is_array())
    throw invalid_request("'tokens' is required and must be a list of token ids", "tokens");
  std::vector<int> ids;
  for (const nlohmann::json& v : *it) {
    auto id = as_int(v, 0, limits.vocab_size - 1);
    if (!id || v.is_number_float())
      throw invalid_request(
          "'tokens' entries must be token ids in [0, " + std::to_string(limits.vocab_size) + ")",
          "tokens");
    ids.push_back(static_cast<int>(*id));
  }
  return json_reply(dump_json({{"prompt", tok.decode(ids, false)}}));
}

std::shared_ptr<CompletionJob> completion_job(std::string_view body, const Tokenizer& tok,
                                              const ModelLimits& limits, CompletionMeta meta) {
  auto job = std::make_shared<CompletionJob>();
  job->prep = prepare_completion(parse_completion_body(body, limits), tok, limits);
  job->meta = std::move(meta);
  job->meta.model = job->prep.body.model;
  job->assembler = std::make_unique<CompletionAssembler>(job->meta, job->prep, tok);
  return job;
}

std::shared_ptr<CompletionJob> chat_job(std::string_view body, const Tokenizer& tok,
                                        const ChatTemplateEnv& chat, const ModelLimits& limits,
                                        CompletionMeta meta) {
  auto job = std::make_shared<CompletionJob>();
  job->prep = prepare_chat(parse_chat_body(body, limits), chat, tok, limits);
  job->meta = std::move(meta);
  job->meta.model = job->prep.body.model;
  job->assembler = std::make_unique<ChatAssembler>(job->meta, job->prep, tok);
  return job;
}

namespace {

CompletionMeta new_meta(ApiContext& ctx, const char* prefix) {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return CompletionMeta{ctx.ids->next(prefix),
                        std::chrono::duration_cast<std::chrono::seconds>(now).count(), ""};
}

}  // namespace

Router make_api_router(ApiContext& ctx) {
  Router r;
  // Only /v1/* needs the key, as in vLLM: health checks and scrapes stay open.
  auto authed = [&ctx](Handler h) {
    return [&ctx, h = std::move(h)](const HttpRequestIn& req) {
      check_bearer(req.authorization, ctx.api_key);
      return h(req);
    };
  };
  auto reply = [](HttpReply rep) { return RouteResult{std::move(rep), nullptr}; };
  r.add("GET", "/health", [&ctx, reply](const HttpRequestIn&) {
    return reply(health_reply(ctx.loop ? ctx.loop->health_problem(ctx.health_stall) : ""));
  });
  r.add("GET", "/v1/models", authed([&ctx, reply](const HttpRequestIn&) {
          return reply(models_reply(ctx.limits, ctx.started));
        }));
  r.add_prefix("GET", "/v1/models/", authed([&ctx, reply](const HttpRequestIn& req) {
                 const std::string id = target_path(req.target).substr(11);
                 return reply(model_reply(id, ctx.limits, ctx.started));
               }));
  r.add("POST", "/v1/completions", authed([&ctx](const HttpRequestIn& req) {
          // Built before the RouteResult: GCC 12 frees twice when an exception leaves a
          // half-built aggregate.
          auto job = completion_job(req.body, *ctx.tokenizer, ctx.limits, new_meta(ctx, "cmpl-"));
          return RouteResult{HttpReply{}, std::move(job)};
        }));
  r.add("POST", "/v1/chat/completions", authed([&ctx](const HttpRequestIn& req) {
          auto job =
              chat_job(req.body, *ctx.tokenizer, ctx.chat, ctx.limits, new_meta(ctx, "chatcmpl-"));
          return RouteResult{HttpReply{}, std::move(job)};
        }));
  r.add("POST", "/tokenize", [&ctx, reply](const HttpRequestIn& req) {
    return reply(tokenize_reply(req.body, *ctx.tokenizer, ctx.limits, ctx.chat));
  });
  r.add("POST", "/detokenize", [&ctx, reply](const HttpRequestIn& req) {
    return reply(detokenize_reply(req.body, *ctx.tokenizer, ctx.limits));
  });
  if (ctx.metrics && ctx.loop) {
    r.add("GET", "/metrics", [&ctx](const HttpRequestIn&) {
      return RouteResult{
          {200, "text/plain; version=0.0.4", ctx.metrics->render([&ctx] { return ctx.loop->stats(); }), {}}, nullptr};
    });
  }
  return r;
}

}  // namespace xq
