// What /health reports about the engine thread (EngineLoop::health_problem): nothing while it
// steps or idles; a stall once a step with work waiting has taken longer than the limit; death
// once the thread has stopped. A real engine loop over the CPU model with random weights; the
// model can hold its forward() (a step that does not end) or throw from it, and a request's sink
// can fail to post its event, which is what stops the engine thread.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <new>
#include <stdexcept>
#include <thread>

#include "engine/model/cpu_model.h"
#include "scheduler/engine_loop.h"
#include "tests/unit/engine_random_model.h"
#include "tests/unit/server_byte_tokenizer.h"

namespace xq {
namespace {

using namespace std::chrono_literals;

// The model's cache format, whose allocation of a sequence's cache can be made to fail.
class FallibleFormat : public CacheFormat {
 public:
  explicit FallibleFormat(const CacheFormat& inner) : inner_(inner) {}
  std::string name() const override { return inner_.name(); }
  double layer_bytes_per_token(int l) const override { return inner_.layer_bytes_per_token(l); }
  double window_bytes_max() const override { return inner_.window_bytes_max(); }
  const ModelConfig& config() const override { return inner_.config(); }
  std::unique_ptr<SequenceCache> new_sequence() const override {
    if (out_of_memory) throw std::bad_alloc();
    return inner_.new_sequence();
  }
  std::atomic<bool> out_of_memory{false};

 private:
  const CacheFormat& inner_;
};

// The CPU model, with a gate in front of forward(), a switch that makes it throw, and a cache
// format that can fail to allocate.
class GatedModel : public Model {
 public:
  explicit GatedModel(const ModelConfig& cfg)
      : weights_(random_weights(cfg, 5)),
        inner_(cfg, weights_, CacheOptions{}),
        format_(inner_.cache_format()) {}
  const ModelConfig& config() const override { return inner_.config(); }
  const CacheFormat& cache_format() const override { return format_; }
  size_t weight_bytes() const override { return inner_.weight_bytes(); }
  void forward(std::span<const SeqInput> batch, std::vector<float>& logits) override {
    {
      std::unique_lock lk(mu_);
      ++entered_;
      entered_cv_.notify_all();
      open_cv_.wait(lk, [&] { return open_; });
    }
    if (fail_forward_) throw std::runtime_error("the device went away");
    inner_.forward(batch, logits);
  }

  void hold() {
    std::lock_guard lk(mu_);
    open_ = false;
  }
  void release() {
    std::lock_guard lk(mu_);
    open_ = true;
    open_cv_.notify_all();
  }
  void wait_entered(int n) {
    std::unique_lock lk(mu_);
    ASSERT_TRUE(entered_cv_.wait_for(lk, 10s, [&] { return entered_ >= n; }));
  }
  void fail_forward(bool on) { fail_forward_ = on; }
  void out_of_memory(bool on) { format_.out_of_memory = on; }

 private:
  MemoryWeights weights_;
  CpuModel inner_;
  FallibleFormat format_;
  std::atomic<bool> fail_forward_{false};
  std::mutex mu_;
  std::condition_variable open_cv_, entered_cv_;
  bool open_ = true;
  int entered_ = 0;
};

// Collects a request's events; the last one ends the wait.
struct Events {
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  RequestEvent last;
  bool fail_posting = false;  // the sink throws, as a relay out of memory would

  EventSink sink() {
    return [this](RequestEvent ev) {
      if (fail_posting) throw std::bad_alloc();
      std::lock_guard lk(mu);
      if (ev.finished) {
        finished = true;
        last = std::move(ev);
      }
      cv.notify_all();
    };
  }
  bool wait_finished() {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, 20s, [&] { return finished; });
  }
};

class EngineHealth : public ::testing::Test {
 protected:
  EngineHealth() {
    ModelConfig cfg = tiny_config(Arch::Llama);
    cfg.vocab_size = 258;
    cfg.max_position_embeddings = 256;
    auto model = std::make_unique<GatedModel>(cfg);
    gated_ = model.get();
    loaded_.model = std::move(model);
    loaded_.tokenizer = std::make_unique<testing::ByteTokenizer>();
    SchedulerOptions opts;
    opts.cache_bytes = 1 << 24;
    loop_ = std::make_unique<EngineLoop>(loaded_, opts);
  }
  ~EngineHealth() override {
    gated_->release();
    loop_->stop();
  }

  Request request() const {
    Request r;
    r.prompt = {1, 2, 3, 4, 5};
    r.max_tokens = 3;
    r.sampling.temperature = 0;
    return r;
  }
  // health_problem(1 s) once it is non-empty, or empty after `within`.
  std::string problem_within(std::chrono::milliseconds within) {
    const auto end = std::chrono::steady_clock::now() + within;
    std::string p;
    while ((p = loop_->health_problem(1s)).empty() && std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(50ms);
    }
    return p;
  }

  LoadedModel loaded_;
  GatedModel* gated_ = nullptr;
  std::unique_ptr<EngineLoop> loop_;
};

TEST_F(EngineHealth, IdleAndSteppingAreHealthy) {
  EXPECT_EQ(problem_within(1500ms), "");  // idle past the limit is no stall
  Events ev;
  loop_->submit(request(), ev.sink());
  ASSERT_TRUE(ev.wait_finished());
  EXPECT_EQ(ev.last.finish_reason, "length");
  EXPECT_EQ(problem_within(1500ms), "");
}

TEST_F(EngineHealth, AStepWithWorkWaitingPastTheLimitIsAStallUntilItEnds) {
  gated_->hold();
  Events ev;
  loop_->submit(request(), ev.sink());
  gated_->wait_entered(1);
  EXPECT_EQ(loop_->health_problem(60s), "");  // within a longer limit, not yet
  const std::string stalled = problem_within(5s);
  EXPECT_NE(stalled.find("has not finished a step for over 1 s with requests waiting"),
            std::string::npos)
      << stalled;
  // A limit below a second (--engine-stall-timeout 0.5) is named as given.
  EXPECT_NE(loop_->health_problem(500ms).find("for over 0.5 s"), std::string::npos);
  gated_->release();
  ASSERT_TRUE(ev.wait_finished());
  EXPECT_EQ(ev.last.finish_reason, "length");
  EXPECT_EQ(loop_->health_problem(1s), "");
}

TEST_F(EngineHealth, AFailedStepFailsItsRequestsAndTheEngineGoesOn) {
  gated_->fail_forward(true);
  Events failed;
  loop_->submit(request(), failed.sink());
  ASSERT_TRUE(failed.wait_finished());
  EXPECT_EQ(failed.last.finish_reason, "error");
  EXPECT_NE(failed.last.error.find("the device went away"), std::string::npos);
  EXPECT_EQ(loop_->health_problem(1s), "");
  gated_->fail_forward(false);
  Events ok;
  loop_->submit(request(), ok.sink());
  ASSERT_TRUE(ok.wait_finished());
  EXPECT_EQ(ok.last.finish_reason, "length");
}

TEST_F(EngineHealth, ADeadEngineThreadIsReportedAndItsRequestsAreEnded) {
  // The sink cannot post the first token (a relay out of memory), and failing the request then
  // throws again: that escapes the step's handler and stops the thread. The request that came
  // in meanwhile still gets its final event.
  gated_->hold();
  Events doomed, bystander;
  doomed.fail_posting = true;
  loop_->submit(request(), doomed.sink());
  gated_->wait_entered(1);
  loop_->submit(request(), bystander.sink());
  gated_->release();
  ASSERT_TRUE(bystander.wait_finished());
  EXPECT_EQ(bystander.last.finish_reason, "error");
  EXPECT_EQ(bystander.last.error_status, 503);
  EXPECT_EQ(bystander.last.error, "the engine thread has stopped");
  EXPECT_EQ(problem_within(5s), "the engine thread has stopped");
  EXPECT_EQ(loop_->health_problem(3600s), "the engine thread has stopped");
  // Later requests are answered at once instead of waiting for a thread that is gone.
  Events late;
  loop_->submit(request(), late.sink());
  ASSERT_TRUE(late.wait_finished());
  EXPECT_EQ(late.last.error_status, 503);
}

TEST_F(EngineHealth, ACacheThatCannotBeAllocatedFailsOnlyItsRequest) {
  // This used to stop the engine thread, and the request, never finished, waited forever.
  gated_->out_of_memory(true);
  Events failed;
  loop_->submit(request(), failed.sink());
  ASSERT_TRUE(failed.wait_finished());
  EXPECT_EQ(failed.last.finish_reason, "error");
  EXPECT_NE(failed.last.error.find("cannot set up the request"), std::string::npos);
  EXPECT_EQ(loop_->health_problem(1s), "");
  gated_->out_of_memory(false);
  Events ok;
  loop_->submit(request(), ok.sink());
  ASSERT_TRUE(ok.wait_finished());
  EXPECT_EQ(ok.last.finish_reason, "length");
}

}  // namespace
}  // namespace xq
