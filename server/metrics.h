// ServerMetrics: the Prometheus registry the server owns, the series it keeps (vLLM's names with
// an `xquant:` prefix), and the text exposition GET /metrics serves.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "scheduler/engine_loop.h"
#include "scheduler/request.h"

namespace xq {

class ServerMetrics {
 public:
  // bytes_per_token: the cache format's; fp16_bytes_per_token: the fp16 K/V baseline's;
  // max_model_len bounds the token-count histograms' buckets (1, 2, 5, 10, 20, 50, ...).
  ServerMetrics(double bytes_per_token, double fp16_bytes_per_token, int max_model_len);

  // Thread-safe. One engine request finished (reason "stop" | "length" | "abort" | "error").
  // `last`, the request's last engine event when there is one, gives the latency histograms.
  void on_request_finished(const std::string& reason, int prompt_tokens, int completion_tokens,
                           const RequestEvent* last = nullptr);
  // Thread-safe. A request refused because the queue was full (--max-queued-requests).
  void on_queue_full() { queue_full_.Increment(); }
  // Thread-safe. The Prometheus text format; gauges and engine counters all come from `stats`,
  // one snapshot, so a scrape is consistent.
  std::string render(const LoopStats& stats);
  // The same, with the snapshot taken under the render lock: overlapping scrapes then see
  // snapshots in the order their counters were raised.
  std::string render(const std::function<LoopStats()>& snapshot);

 private:
  std::string render_locked(const LoopStats& stats);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter& prompt_tokens_;
  prometheus::Counter& generation_tokens_;
  prometheus::Counter& preemptions_;
  prometheus::Counter& forward_seconds_;
  prometheus::Counter& step_overhead_seconds_;
  prometheus::Counter& step_overhead_cpu_seconds_;
  prometheus::Counter& steps_;
  prometheus::Family<prometheus::Counter>& success_;
  prometheus::Counter& queue_full_;
  prometheus::Gauge& running_;
  prometheus::Gauge& waiting_;
  prometheus::Gauge& cache_usage_;
  prometheus::Gauge& blocks_total_;
  prometheus::Gauge& blocks_free_;
  prometheus::Histogram& ttft_;
  prometheus::Histogram& tpot_;
  prometheus::Histogram& e2e_;
  prometheus::Histogram& request_prompt_tokens_;
  prometheus::Histogram& request_generation_tokens_;

  // The engine counters' values at the last scrape: their counters grow by the difference, so
  // concurrent scrapes never make one go backwards.
  std::mutex render_mu_;
  LoopStats exported_;
};

}  // namespace xq
