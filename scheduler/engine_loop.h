// EngineLoop: the engine thread. Requests come in from any thread, are scheduled in continuous
// batches (decode tokens of running sequences mixed with prefill chunks of new ones), and their
// events go out through each request's sink.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/model/model.h"
#include "scheduler/request.h"

namespace xq {

struct SchedulerOptions {
  int max_num_seqs = 64;
  int max_num_batched_tokens = 2048;
  int max_model_len = 0;      // 0: the model's max_position_embeddings
  uint64_t seed = 0;          // base of the per-request fallback seeds
  double cache_bytes = 4.0 * (1 << 30);  // the cache memory budget
  int block_size = 16;        // tokens per cache block
  int threads = 0;            // host threads drawing tokens (0: all cores), as --threads
};

// A consistent snapshot of the scheduler, taken once per step.
struct LoopStats {
  int running = 0;
  int waiting = 0;
  uint64_t steps = 0;
  int64_t blocks_total = 0;
  int64_t blocks_free = 0;
  uint64_t preemptions = 0;
  uint64_t prompt_tokens = 0;      // prompt tokens run through the model (recomputes included)
  uint64_t generation_tokens = 0;  // tokens sampled
  // Steps that ran the model, the seconds inside forward(), and the seconds of the rest of those
  // steps (taking in requests, planning, sampling, detokenizing, stop checks, posting events).
  uint64_t model_steps = 0;
  double forward_seconds = 0;
  double step_overhead_seconds = 0;
  // The engine thread's CPU time in that rest of the step: the wall clock above also counts
  // time the thread waited for a core that other threads (HTTP, clients on the same host) held.
  double step_overhead_cpu_seconds = 0;
};

class EngineLoop {
 public:
  EngineLoop(LoadedModel& model, SchedulerOptions opts);
  ~EngineLoop();
  EngineLoop(const EngineLoop&) = delete;
  EngineLoop& operator=(const EngineLoop&) = delete;

  // Thread-safe. Returns the request id. The sink is called on the engine thread.
  uint64_t submit(Request req, EventSink sink);
  // Thread-safe; the request finishes with reason "abort" and its cache is freed.
  void abort(uint64_t id);
  // Thread-safe. Ends every request not yet running (or every request, when `running_too`)
  // with finish_reason "error", error_status 503 and `why`: the drain at shutdown.
  void fail_pending(const std::string& why, bool running_too);
  // Stops the thread after finishing nothing further; pending requests are aborted.
  void stop();
  LoopStats stats() const;
  // Requests submitted and not yet running (thread-safe).
  int queued() const;
  // Empty when the engine thread is alive and, with work waiting, finished a step within
  // `stall`; otherwise why not (for /health).
  std::string health_problem(std::chrono::milliseconds stall) const;

  const Tokenizer& tokenizer() const { return *model_.tokenizer; }
  const ModelConfig& model_config() const { return model_.model->config(); }
  const CacheFormat& cache_format() const { return model_.model->cache_format(); }
  int max_model_len() const;
  // Tokens the whole cache holds: a request whose prompt plus max_tokens exceeds this can never
  // run, even alone.
  int64_t cache_capacity_tokens() const;
  int block_size() const;

 private:
  struct Impl;
  LoadedModel& model_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace xq
