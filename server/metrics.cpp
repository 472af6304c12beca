#include "server/metrics.h"

#include <prometheus/text_serializer.h>

#include <sstream>

namespace xq {
namespace {

prometheus::Counter& counter(prometheus::Registry& r, const std::string& name,
                             const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

prometheus::Gauge& gauge(prometheus::Registry& r, const std::string& name,
                         const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

}  // namespace

ServerMetrics::ServerMetrics(double bytes_per_token, double fp16_bytes_per_token)
    : registry_(std::make_shared<prometheus::Registry>()),
      prompt_tokens_(
          counter(*registry_, "xquant:prompt_tokens_total", "Prompt tokens of finished requests")),
      generation_tokens_(counter(*registry_, "xquant:generation_tokens_total",
                                 "Generated tokens of finished requests")),
      success_(prometheus::BuildCounter()
                   .Name("xquant:request_success_total")
                   .Help("Finished requests by finish reason")
                   .Register(*registry_)),
      running_(gauge(*registry_, "xquant:num_requests_running", "Sequences in the running set")),
      waiting_(gauge(*registry_, "xquant:num_requests_waiting", "Requests waiting for admission")) {
  gauge(*registry_, "xquant:cache_bytes_per_token",
        "Cache bytes one token occupies across all layers")
      .Set(bytes_per_token);
  gauge(*registry_, "xquant:cache_compression_ratio",
        "fp16 K/V bytes per token divided by the cache format's")
      .Set(bytes_per_token > 0 ? fp16_bytes_per_token / bytes_per_token : 0.0);
}

void ServerMetrics::on_request_finished(const std::string& reason, int prompt_tokens,
                                        int completion_tokens) {
  prompt_tokens_.Increment(prompt_tokens);
  generation_tokens_.Increment(completion_tokens);
  success_.Add({{"finished_reason", reason}}).Increment();
}

std::string ServerMetrics::render(const LoopStats& stats) {
  running_.Set(stats.running);
  waiting_.Set(stats.waiting);
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

}  // namespace xq
