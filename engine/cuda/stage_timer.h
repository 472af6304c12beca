// StageTimer: where a CUDA decode step's time goes, when XQ_CUDA_PROFILE is set: CUDA events
// between named stages on the model's stream, summed per stage over the decode steps (one new
// token per sequence) and printed when the model goes away. Off (no events at all) otherwise.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace xq::cuda {

class StageTimer {
 public:
  StageTimer() : on_(std::getenv("XQ_CUDA_PROFILE") != nullptr) {}
  ~StageTimer() {
    if (steps_ > 0) report();
    for (auto& [name, e] : marks_) cudaEventDestroy(e);
    for (cudaEvent_t e : pool_) cudaEventDestroy(e);
  }
  void report() const {
    double all = 0;
    for (const auto& [name, ms] : total_) all += ms;
    std::fprintf(stderr, "XQ_CUDA_PROFILE: %d steps, %.3f ms per step\n", steps_, all / steps_);
    for (const auto& [name, ms] : total_)
      std::fprintf(stderr, "  %-16s %8.3f ms/step %5.1f%%\n", name.c_str(), ms / steps_,
                   100.0 * ms / all);
  }
  bool on() const { return on_; }
  // The stage that ends here (the time since the previous mark is charged to it).
  void mark(const char* stage, cudaStream_t s) {
    if (!on_) return;
    cudaEvent_t e = next_event();
    cudaEventRecord(e, s);
    marks_.emplace_back(stage, e);
  }
  // After the step's stream synchronized: sums the intervals (when `count`) and recycles the
  // events.
  void end_step(bool count) {
    if (!on_ || marks_.empty()) return;
    for (size_t i = 1; count && i < marks_.size(); ++i) {
      float ms = 0;
      cudaEventElapsedTime(&ms, marks_[i - 1].second, marks_[i].second);
      total_[marks_[i].first] += ms;
    }
    for (auto& [name, e] : marks_) pool_.push_back(e);
    marks_.clear();
    steps_ += count ? 1 : 0;
  }

 private:
  cudaEvent_t next_event() {
    if (!pool_.empty()) {
      cudaEvent_t e = pool_.back();
      pool_.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    cudaEventCreate(&e);
    return e;
  }
  bool on_;
  int steps_ = 0;
  std::vector<std::pair<std::string, cudaEvent_t>> marks_;
  std::vector<cudaEvent_t> pool_;
  std::map<std::string, double> total_;
};

}  // namespace xq::cuda
