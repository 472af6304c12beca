#include "server/metrics.h"

#include <prometheus/text_serializer.h>

#include <chrono>
#include <sstream>

namespace xq {
namespace {

using prometheus::Histogram;

prometheus::Counter& counter(prometheus::Registry& r, const std::string& name,
                             const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

prometheus::Gauge& gauge(prometheus::Registry& r, const std::string& name,
                         const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

Histogram& histogram(prometheus::Registry& r, const std::string& name, const std::string& help,
                     Histogram::BucketBoundaries buckets) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add({}, buckets);
}

// vLLM's buckets, so dashboards made for vLLM read these series unchanged.
const Histogram::BucketBoundaries kTtftBuckets = {
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
    1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
// TPOT starts at 1 ms (vLLM's at 10 ms): a GPU decode step takes 5-15 ms.
const Histogram::BucketBoundaries kTpotBuckets = {
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2, 0.3,
    0.4,   0.5,    0.75,  1.0,    2.5,  5.0,   7.5,  10.0,  20.0, 40.0, 80.0};
const Histogram::BucketBoundaries kLatencyBuckets = {
    0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
    30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

// 1, 2, 5, 10, 20, 50, ... up to and including the first value >= max_value.
Histogram::BucketBoundaries one_two_five(int max_value) {
  Histogram::BucketBoundaries b;
  for (double scale = 1;; scale *= 10) {
    for (double m : {1.0, 2.0, 5.0}) {
      b.push_back(m * scale);
      if (m * scale >= max_value) return b;
    }
  }
}

double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Adds what a monotonic engine counter gained since the last scrape.
template <typename T>
void add_delta(prometheus::Counter& c, T now, T& last) {
  if (now <= last) return;
  c.Increment(static_cast<double>(now - last));
  last = now;
}

}  // namespace

ServerMetrics::ServerMetrics(double bytes_per_token, double fp16_bytes_per_token, int max_model_len)
    : registry_(std::make_shared<prometheus::Registry>()),
      prompt_tokens_(
          counter(*registry_, "xquant:prompt_tokens_total", "Prompt tokens of finished requests")),
      generation_tokens_(
          counter(*registry_, "xquant:generation_tokens_total", "Tokens sampled by the engine")),
      preemptions_(counter(*registry_, "xquant:num_preemptions_total",
                           "Sequences preempted (cache freed, recomputed later)")),
      forward_seconds_(counter(*registry_, "xquant:engine_forward_seconds_total",
                               "Seconds the engine thread spent in the model's forward pass")),
      step_overhead_seconds_(counter(
          *registry_, "xquant:engine_step_overhead_seconds_total",
          "Seconds of engine steps outside the forward pass (planning, sampling, detokenizing, "
          "stop checks, posting events)")),
      step_overhead_cpu_seconds_(counter(
          *registry_, "xquant:engine_step_overhead_cpu_seconds_total",
          "The engine thread's CPU seconds in that rest of its steps (the wall clock also counts "
          "waits for a core)")),
      steps_(counter(*registry_, "xquant:engine_steps_total", "Engine steps that ran the model")),
      success_(prometheus::BuildCounter()
                   .Name("xquant:request_success_total")
                   .Help("Finished requests by finish reason")
                   .Register(*registry_)),
      queue_full_(counter(*registry_, "xquant:request_queue_full_total",
                          "Requests refused with 503 because --max-queued-requests were waiting")),
      running_(gauge(*registry_, "xquant:num_requests_running", "Sequences in the running set")),
      waiting_(gauge(*registry_, "xquant:num_requests_waiting", "Requests waiting for admission")),
      cache_usage_(gauge(*registry_, "xquant:cache_usage_perc",
                         "Cache blocks in use divided by all blocks (0 to 1)")),
      blocks_total_(gauge(*registry_, "xquant:cache_blocks", "Cache blocks in the pool")),
      blocks_free_(gauge(*registry_, "xquant:cache_blocks_free", "Cache blocks not in use")),
      ttft_(histogram(*registry_, "xquant:time_to_first_token_seconds",
                      "Seconds from submission to the first sampled token", kTtftBuckets)),
      tpot_(histogram(*registry_, "xquant:time_per_output_token_seconds",
                      "Seconds per generated token after the first, per request", kTpotBuckets)),
      e2e_(histogram(*registry_, "xquant:e2e_request_latency_seconds",
                     "Seconds from submission to the request's end", kLatencyBuckets)),
      request_prompt_tokens_(histogram(*registry_, "xquant:request_prompt_tokens",
                                       "Prompt tokens per finished request",
                                       one_two_five(max_model_len))),
      request_generation_tokens_(histogram(*registry_, "xquant:request_generation_tokens",
                                           "Generated tokens per finished request",
                                           one_two_five(max_model_len))) {
  gauge(*registry_, "xquant:cache_bytes_per_token",
        "Cache bytes one token occupies across all layers, in a sequence of the full context "
        "length (sliding-window layers holding only their window)")
      .Set(bytes_per_token);
  gauge(*registry_, "xquant:cache_compression_ratio",
        "fp16 K/V bytes per token divided by the cache format's")
      .Set(bytes_per_token > 0 ? fp16_bytes_per_token / bytes_per_token : 0.0);
  // The usual reasons exist from the start, so rate() sees their first increment.
  for (const char* r : {"stop", "length", "abort", "error"}) success_.Add({{"finished_reason", r}});
}

void ServerMetrics::on_request_finished(const std::string& reason, int prompt_tokens,
                                        int completion_tokens, const RequestEvent* last) {
  prompt_tokens_.Increment(prompt_tokens);
  success_.Add({{"finished_reason", reason}}).Increment();
  request_prompt_tokens_.Observe(prompt_tokens);
  request_generation_tokens_.Observe(completion_tokens);
  if (!last || last->arrival == std::chrono::steady_clock::time_point{}) return;
  e2e_.Observe(seconds(last->finished_at - last->arrival));
  if (last->first_token == std::chrono::steady_clock::time_point{}) return;
  ttft_.Observe(seconds(last->first_token - last->arrival));
  if (completion_tokens > 1)
    tpot_.Observe(seconds(last->finished_at - last->first_token) / (completion_tokens - 1));
}

std::string ServerMetrics::render(const LoopStats& stats) {
  std::lock_guard lock(render_mu_);
  return render_locked(stats);
}

std::string ServerMetrics::render(const std::function<LoopStats()>& snapshot) {
  std::lock_guard lock(render_mu_);
  return render_locked(snapshot());
}

std::string ServerMetrics::render_locked(const LoopStats& stats) {
  running_.Set(stats.running);
  waiting_.Set(stats.waiting);
  blocks_total_.Set(static_cast<double>(stats.blocks_total));
  blocks_free_.Set(static_cast<double>(stats.blocks_free));
  cache_usage_.Set(stats.blocks_total > 0
                       ? static_cast<double>(stats.blocks_total - stats.blocks_free) /
                             static_cast<double>(stats.blocks_total)
                       : 0.0);
  add_delta(generation_tokens_, stats.generation_tokens, exported_.generation_tokens);
  add_delta(preemptions_, stats.preemptions, exported_.preemptions);
  add_delta(steps_, stats.model_steps, exported_.model_steps);
  add_delta(forward_seconds_, stats.forward_seconds, exported_.forward_seconds);
  add_delta(step_overhead_seconds_, stats.step_overhead_seconds, exported_.step_overhead_seconds);
  add_delta(step_overhead_cpu_seconds_, stats.step_overhead_cpu_seconds,
            exported_.step_overhead_cpu_seconds);
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

}  // namespace xq
