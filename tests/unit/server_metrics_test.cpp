// ServerMetrics: gauges from one LoopStats snapshot, engine counters that only grow, latency
// histograms from the engine's timestamps.
#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <string>

#include "server/metrics.h"

namespace xq {
namespace {

// The value of the first sample line that starts with `series` (name plus labels, if any).
double sample(const std::string& text, const std::string& series) {
  const std::regex line("(^|\n)" + std::regex_replace(series, std::regex(R"([{}+.])"), R"(\$&)") +
                        " ([^\n]+)");
  std::smatch m;
  if (!std::regex_search(text, m, line)) throw std::runtime_error(series + " not in:\n" + text);
  return std::stod(m[2]);
}

LoopStats stats(int64_t free, uint64_t tokens, uint64_t steps, double fwd) {
  LoopStats s;
  s.running = 3;
  s.waiting = 2;
  s.blocks_total = 100;
  s.blocks_free = free;
  s.preemptions = steps / 2;
  s.generation_tokens = tokens;
  s.model_steps = steps;
  s.forward_seconds = fwd;
  s.step_overhead_seconds = fwd / 10;
  return s;
}

TEST(ServerMetrics, GaugesComeFromTheSnapshot) {
  ServerMetrics m(64, 256, 2048);
  const std::string t = m.render(stats(25, 10, 4, 1.0));
  EXPECT_EQ(sample(t, "xquant:num_requests_running"), 3);
  EXPECT_EQ(sample(t, "xquant:num_requests_waiting"), 2);
  EXPECT_EQ(sample(t, "xquant:cache_blocks"), 100);
  EXPECT_EQ(sample(t, "xquant:cache_blocks_free"), 25);
  EXPECT_DOUBLE_EQ(sample(t, "xquant:cache_usage_perc"), 0.75);
  EXPECT_EQ(sample(t, "xquant:cache_bytes_per_token"), 64);
  EXPECT_EQ(sample(t, "xquant:cache_compression_ratio"), 4);
  EXPECT_EQ(sample(t, "xquant:generation_tokens_total"), 10);
  EXPECT_EQ(sample(t, "xquant:engine_steps_total"), 4);
  EXPECT_EQ(sample(t, "xquant:num_preemptions_total"), 2);
  EXPECT_DOUBLE_EQ(sample(t, "xquant:engine_forward_seconds_total"), 1.0);
  EXPECT_DOUBLE_EQ(sample(t, "xquant:engine_step_overhead_seconds_total"), 0.1);
  EXPECT_NE(t.find("# TYPE xquant:time_to_first_token_seconds histogram"), std::string::npos);
}

TEST(ServerMetrics, EngineCountersNeverGoBack) {
  ServerMetrics m(64, 256, 2048);
  m.render(stats(0, 50, 10, 2.0));
  // An older snapshot (a scrape that lost the race to a newer one) must not lower anything.
  std::string t = m.render(stats(0, 40, 8, 1.5));
  EXPECT_EQ(sample(t, "xquant:generation_tokens_total"), 50);
  EXPECT_EQ(sample(t, "xquant:engine_steps_total"), 10);
  EXPECT_DOUBLE_EQ(sample(t, "xquant:engine_forward_seconds_total"), 2.0);
  t = m.render(stats(0, 70, 12, 2.5));
  EXPECT_EQ(sample(t, "xquant:generation_tokens_total"), 70);
  EXPECT_EQ(sample(t, "xquant:engine_steps_total"), 12);
  EXPECT_DOUBLE_EQ(sample(t, "xquant:engine_forward_seconds_total"), 2.5);
}

TEST(ServerMetrics, FinishedRequestsFeedTheHistograms) {
  ServerMetrics m(64, 256, 100);
  RequestEvent ev;
  ev.arrival = std::chrono::steady_clock::time_point{} + std::chrono::seconds(10);
  ev.first_token = ev.arrival + std::chrono::milliseconds(30);
  ev.finished_at = ev.first_token + std::chrono::milliseconds(90);  // 9 more tokens, 10 ms each
  m.on_request_finished("length", 7, 10, &ev);
  m.on_request_finished("abort", 5, 0);  // the client left: no engine event
  const std::string t = m.render(LoopStats{});
  EXPECT_EQ(sample(t, "xquant:request_success_total{finished_reason=\"length\"}"), 1);
  EXPECT_EQ(sample(t, "xquant:request_success_total{finished_reason=\"abort\"}"), 1);
  EXPECT_EQ(sample(t, "xquant:request_success_total{finished_reason=\"stop\"}"), 0);
  EXPECT_EQ(sample(t, "xquant:prompt_tokens_total"), 12);
  EXPECT_EQ(sample(t, "xquant:time_to_first_token_seconds_count"), 1);
  EXPECT_NEAR(sample(t, "xquant:time_to_first_token_seconds_sum"), 0.03, 1e-9);
  EXPECT_EQ(sample(t, "xquant:time_to_first_token_seconds_bucket{le=\"0.02\"}"), 0);
  EXPECT_EQ(sample(t, "xquant:time_to_first_token_seconds_bucket{le=\"0.04\"}"), 1);
  EXPECT_NEAR(sample(t, "xquant:time_per_output_token_seconds_sum"), 0.01, 1e-9);
  EXPECT_NEAR(sample(t, "xquant:e2e_request_latency_seconds_sum"), 0.12, 1e-9);
  EXPECT_EQ(sample(t, "xquant:request_prompt_tokens_count"), 2);
  EXPECT_EQ(sample(t, "xquant:request_generation_tokens_sum"), 10);
  // 1-2-5 buckets up to the first at or above max_model_len.
  EXPECT_EQ(sample(t, "xquant:request_prompt_tokens_bucket{le=\"5\"}"), 1);
  EXPECT_EQ(sample(t, "xquant:request_prompt_tokens_bucket{le=\"100\"}"), 2);
  EXPECT_EQ(t.find("le=\"200\""), std::string::npos);
}

}  // namespace
}  // namespace xq
