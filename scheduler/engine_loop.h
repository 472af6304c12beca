// EngineLoop: the engine thread. Requests come in from any thread, are scheduled in continuous
// batches (decode tokens of running sequences mixed with prefill chunks of new ones), and their
// events go out through each request's sink.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/model/model.h"
#include "scheduler/request.h"

namespace xq {

struct SchedulerOptions {
  int max_num_seqs = 64;
  int max_num_batched_tokens = 2048;
  int max_model_len = 0;  // 0: the model's max_position_embeddings
  uint64_t seed = 0;      // base of the per-request fallback seeds
};

struct LoopStats {
  int running = 0;
  int waiting = 0;
  uint64_t steps = 0;
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
  // Stops the thread after finishing nothing further; pending requests are aborted.
  void stop();
  LoopStats stats() const;

  const Tokenizer& tokenizer() const { return *model_.tokenizer; }
  const ModelConfig& model_config() const { return model_.model->config(); }
  const CacheFormat& cache_format() const { return model_.model->cache_format(); }
  int max_model_len() const;

 private:
  struct Impl;
  LoadedModel& model_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace xq
