// ProgressWeightSource: a WeightSource that passes look-ups through to another and tells how far
// a model build has got reading it (tensors and bytes, ETA): a redrawn bar on stderr, or a log
// line every 10%.
#pragma once

#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "engine/weights/weight_source.h"

namespace xq {

class ProgressWeightSource : public WeightSource {
 public:
  ProgressWeightSource(const WeightSource& inner, bool bar);
  // A tensor counts as done when the model looks up the next one (it reads and converts each
  // right after its look-up) or at finish().
  const TensorInfo* find(const std::string& name) const override;
  std::vector<std::string> names() const override { return inner_.names(); }
  std::string describe() const override { return inner_.describe(); }
  // Call once the model is built: the last tensor is done, the bar ends. Returns the seconds
  // from construction to the last tensor's look-up (where the reading phase ends, as far as
  // look-ups tell).
  double finish();

 private:
  void report(std::chrono::steady_clock::time_point now, size_t tensors_done) const;

  const WeightSource& inner_;
  const bool bar_;
  size_t total_tensors_ = 0;
  size_t total_bytes_ = 0;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  mutable std::mutex mu_;
  mutable std::set<std::string> seen_;
  mutable size_t bytes_ = 0;          // of the tensors done
  mutable size_t pending_bytes_ = 0;  // of the tensor being read
  mutable int logged_tenth_ = 0;
  mutable std::chrono::steady_clock::time_point last_draw_{};
  mutable std::chrono::steady_clock::time_point last_tensor_ = start_;
};

}  // namespace xq
