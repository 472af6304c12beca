// xquant-server: parse flags, load the model, start the engine thread and the HTTP server, and
// drain gracefully on SIGINT/SIGTERM.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <memory>
#include <random>

#include "config/server_config.h"
#include "engine/model/model.h"
#include "engine/tokenizer/chat_template.h"
#include "kernels/gpu_probe.h"
#include "scheduler/engine_loop.h"
#include "server/api_routes.h"
#include "server/http_server.h"
#include "server/logging.h"
#include "server/metrics.h"

namespace {

using namespace xq;

EngineOptions engine_options(const ServerConfig& c) {
  EngineOptions e;
  e.device = c.device;
  if (e.device == "auto") {
    const auto gpus = probe_gpus();
    e.device = !gpus.empty() && built_with_cuda() ? "cuda" : "cpu";
    if (!gpus.empty() && !built_with_cuda())
      spdlog::warn("found {} GPU(s) ({}), but this build has no CUDA backend: serving on the CPU",
                   gpus.size(), gpus[0].name);
    spdlog::info("--device auto: {}", e.device == "cuda" ? "cuda (" + gpus[0].name + ")" : "cpu");
  }
  e.cache.format = c.cache;
  e.cache.bits = c.cache_bits;
  e.cache.group_size = c.cache_group_size;
  e.cache.latent = c.xquant_latent;
  e.cache.latent_k = c.xquant_latent_k;
  e.cache.latent_k_fp16_channels = c.xquant_latent_k_fp16_channels;
  e.cache.high_precision = {c.cache_high_precision_layers, c.cache_high_precision_bits};
  e.cache.cl_base_bits = c.xquant_cl_base_bits;
  e.cache.cl_base_latent = c.xquant_cl_base == "latent";
  e.cache.fp16_window = c.cache_fp16_window;
  e.threads = c.threads;
  e.gpu_memory_utilization = c.gpu_memory_utilization;
  e.gpu_cache_bytes = static_cast<double>(c.gpu_cache_memory_bytes);
  e.max_num_seqs = c.max_num_seqs;
  e.max_num_batched_tokens = c.max_num_batched_tokens;
  e.max_model_len = c.max_model_len.value_or(0);
  return e;
}

// The cache budget: what the GPU engine set aside on its device, else --cache-memory.
SchedulerOptions scheduler_options(const ServerConfig& c, const Model& model) {
  SchedulerOptions s;
  s.max_num_seqs = c.max_num_seqs;
  s.max_num_batched_tokens = c.max_num_batched_tokens;
  s.max_model_len = c.max_model_len.value_or(0);
  s.seed = c.seed;
  s.threads = c.threads;
  s.cache_bytes = model.device_cache_bytes() > 0 ? model.device_cache_bytes()
                                                 : static_cast<double>(c.cache_memory_bytes);
  return s;
}

// The limits requests are checked against: a prompt plus max_tokens must fit the context and
// the whole cache.
ModelLimits model_limits(const ServerConfig& c, const LoadedModel& m, const EngineLoop& loop) {
  ModelLimits l;
  l.served_name = c.served_model_name.empty() ? m.default_name : c.served_model_name;
  l.model_path = c.model;
  l.vocab_size = std::min(m.model->config().vocab_size, m.tokenizer->vocab_size());
  l.max_model_len = loop.max_model_len();
  const int64_t capacity = loop.cache_capacity_tokens();
  if (capacity < l.max_model_len) {
    spdlog::warn(
        "the cache holds only {} tokens, less than the context length {}: requests are "
        "limited to {} tokens (raise --cache-memory, or --gpu-memory-utilization on a GPU)",
        capacity, l.max_model_len, capacity);
    l.max_model_len = static_cast<int>(capacity);
  }
  return l;
}

// The --chat-template override (a syntax error is fatal: the user asked for it) or the model's
// own (a syntax error only disables chat, with the reason in its 400s).
std::unique_ptr<ChatTemplate> load_chat_template(const ServerConfig& cfg, const Tokenizer& tok,
                                                 std::string& unavailable_reason) {
  if (cfg.chat_template) {
    try {
      return std::make_unique<ChatTemplate>(*cfg.chat_template);
    } catch (const TemplateError& e) {
      throw ConfigError(std::string("--chat-template: ") + e.what());
    }
  }
  if (!tok.chat_template()) return nullptr;
  try {
    return std::make_unique<ChatTemplate>(*tok.chat_template());
  } catch (const TemplateError& e) {
    spdlog::warn("the model's chat template does not parse ({}); /v1/chat/completions is off",
                 e.what());
    unavailable_reason = std::string("its own template does not parse: ") + e.what();
    return nullptr;
  }
}

// Waits up to `grace_s` for running generations; false on a second signal.
bool wait_for_jobs(HttpServer& server, double grace_s, const sigset_t& signals) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace_s);
  timespec tick{0, 50 * 1000 * 1000};
  while (server.active_jobs() > 0 && std::chrono::steady_clock::now() < deadline) {
    if (sigtimedwait(&signals, nullptr, &tick) > 0) return false;
  }
  return true;
}

// Requests still waiting for the engine get 503 at once; running ones get `grace_s` to finish,
// then end with an error (a stream with its error event and [DONE]), which has a moment to be
// written before the connections close.
void drain(HttpServer& server, EngineLoop& loop, double grace_s, const sigset_t& signals) {
  constexpr const char* kWhy = "The server is shutting down";
  loop.fail_pending(kWhy, false);
  if (!wait_for_jobs(server, grace_s, signals)) {
    spdlog::warn("second signal: not waiting for running requests");
    return;
  }
  if (server.active_jobs() == 0) return;
  spdlog::warn("grace period over: ending {} running request(s) with an error",
               server.active_jobs());
  loop.fail_pending(kWhy, true);
  if (!wait_for_jobs(server, 2.0, signals) || server.active_jobs() > 0)
    spdlog::warn("{} connection(s) did not take their last event in time", server.active_jobs());
}

int serve(const ServerConfig& cfg) {
  // Signals are taken by sigwait in this thread; every thread started below inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  LoadedModel model = load_model(cfg.model, engine_options(cfg));
  const ModelConfig& mc = model.model->config();
  if (cfg.max_model_len && *cfg.max_model_len > mc.max_position_embeddings)
    throw ConfigError("--max-model-len " + std::to_string(*cfg.max_model_len) +
                      " is larger than the model's max_position_embeddings (" +
                      std::to_string(mc.max_position_embeddings) + ")");
  auto loop = std::make_unique<EngineLoop>(model, scheduler_options(cfg, *model.model));

  // Per token in a sequence of the full context length: sliding-window layers count the window
  // they hold, amortized over it.
  const int ctx_len = loop->max_model_len();
  ServerMetrics metrics(model.model->cache_format().mean_bytes_per_token(ctx_len),
                        fp16_kv_bytes_per_token(mc, ctx_len), ctx_len);
  std::string template_problem;
  const std::unique_ptr<ChatTemplate> chat_template =
      load_chat_template(cfg, *model.tokenizer, template_problem);
  IdSource ids(std::random_device{}());
  ApiContext ctx;
  ctx.tokenizer = model.tokenizer.get();
  ctx.limits = model_limits(cfg, model, *loop);
  ctx.chat = chat_template_env(chat_template.get(), *model.tokenizer);
  ctx.chat.unavailable_reason = template_problem;
  ctx.api_key = cfg.api_key;
  ctx.loop = loop.get();
  ctx.metrics = &metrics;
  ctx.ids = &ids;
  ctx.started = static_cast<int64_t>(std::time(nullptr));
  ctx.health_stall = std::chrono::milliseconds(
      static_cast<int64_t>(std::llround(cfg.engine_stall_timeout_s * 1000)));
  const Router router = make_api_router(ctx);

  HttpOptions http;
  http.host = cfg.host;
  http.port = cfg.port;
  http.threads = cfg.http_threads;
  http.max_body_bytes = cfg.max_body_bytes;
  http.allowed_origins = cfg.allowed_origins;
  http.stream_interval = cfg.stream_interval;
  http.max_connections = static_cast<size_t>(cfg.max_connections);
  http.max_queued_requests = cfg.max_queued_requests;
  auto server = std::make_unique<HttpServer>(http, router, *loop, metrics);
  const int port = server->start();
  spdlog::info("serving model '{}' (max_model_len {}, cache {})", ctx.limits.served_name,
               ctx.limits.max_model_len, model.model->cache_format().name());
  spdlog::info("listening on http://{}:{} (at most {} connections)", cfg.host, port,
               server->max_connections());

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("{}: no new requests; waiting up to {:.0f}s for running ones", strsignal(sig),
               cfg.shutdown_grace_s);
  server->stop_accepting();
  drain(*server, *loop, cfg.shutdown_grace_s, signals);
  // Order matters: no handler may run once the engine is gone, and the engine's sinks post into
  // the server's io_context, which must outlive them.
  server->stop();
  loop->stop();
  loop.reset();
  server.reset();
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const ServerArgs args = parse_server_args(argc, argv);
  if (!args.config) {
    (args.exit_code == 0 ? std::cout : std::cerr) << args.message;
    return args.exit_code;
  }
  const ServerConfig& cfg = *args.config;
  configure_logging(cfg.log_level, cfg.log_format);
  for (const std::string& w : args.warnings) spdlog::warn("{}", w);
  try {
    return serve(cfg);
  } catch (const std::exception& e) {
    if (cfg.log_format == "json")
      spdlog::critical("xquant-server: error: {}", e.what());
    else
      std::fprintf(stderr, "xquant-server: error: %s\n", e.what());
    return 1;
  }
}
