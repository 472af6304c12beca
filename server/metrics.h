// ServerMetrics: the Prometheus registry the server owns, the series it keeps, and the text
// exposition GET /metrics serves.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "scheduler/engine_loop.h"

namespace xq {

class ServerMetrics {
 public:
  // bytes_per_token: the cache format's; fp16_bytes_per_token: the fp16 K/V baseline's.
  ServerMetrics(double bytes_per_token, double fp16_bytes_per_token);

  // Thread-safe. One engine request finished (reason "stop" | "length" | "abort" | "error").
  void on_request_finished(const std::string& reason, int prompt_tokens, int completion_tokens);
  // The Prometheus text format, with the queue gauges read from `stats` now.
  std::string render(const LoopStats& stats);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter& prompt_tokens_;
  prometheus::Counter& generation_tokens_;
  prometheus::Family<prometheus::Counter>& success_;
  prometheus::Gauge& running_;
  prometheus::Gauge& waiting_;
};

}  // namespace xq
