#include "engine/weights/load_progress.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <string>

namespace xq {
namespace {

using Clock = std::chrono::steady_clock;

// "812.4 MiB" below a GiB, "2.31 GiB" above.
std::string size_text(size_t bytes) {
  char text[32];
  const double mib = static_cast<double>(bytes) / (1024.0 * 1024.0);
  if (mib < 1024.0)
    std::snprintf(text, sizeof text, "%.1f MiB", mib);
  else
    std::snprintf(text, sizeof text, "%.2f GiB", mib / 1024.0);
  return text;
}

std::string eta_text(double elapsed_s, double fraction) {
  if (fraction <= 0.0 || fraction >= 1.0) return "";
  const double left = elapsed_s * (1.0 - fraction) / fraction;
  char text[32];
  std::snprintf(text, sizeof text, ", ETA %.0fs", left);
  return text;
}

}  // namespace

ProgressWeightSource::ProgressWeightSource(const WeightSource& inner, bool bar)
    : inner_(inner), bar_(bar) {
  for (const std::string& name : inner_.names()) {
    const TensorInfo* t = inner_.find(name);
    if (!t) continue;
    ++total_tensors_;
    total_bytes_ += t->nbytes;
  }
}

const TensorInfo* ProgressWeightSource::find(const std::string& name) const {
  const TensorInfo* t = inner_.find(name);
  if (!t) return t;
  std::lock_guard lock(mu_);
  if (!seen_.insert(name).second) return t;
  // The previous tensor is done once the model asks for the next one.
  bytes_ += pending_bytes_;
  pending_bytes_ = t->nbytes;
  last_tensor_ = Clock::now();
  report(last_tensor_, seen_.size() - 1);
  return t;
}

void ProgressWeightSource::report(Clock::time_point now, size_t tensors_done) const {
  const double fraction =
      total_bytes_ > 0 ? static_cast<double>(bytes_) / static_cast<double>(total_bytes_) : 1.0;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  if (bar_) {
    // Redrawn at most ten times a second, and once at the end.
    if (now - last_draw_ < std::chrono::milliseconds(100) && tensors_done < total_tensors_) return;
    last_draw_ = now;
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    std::fprintf(stderr, "\rloading weights [%s%s] %3.0f%%  %zu/%zu tensors  %s/%s%s   ",
                 std::string(filled, '#').c_str(), std::string(kWidth - filled, '-').c_str(),
                 fraction * 100.0, tensors_done, total_tensors_, size_text(bytes_).c_str(),
                 size_text(total_bytes_).c_str(), eta_text(elapsed, fraction).c_str());
    std::fflush(stderr);
    return;
  }
  const int tenth = static_cast<int>(fraction * 10.0);
  if (tenth <= logged_tenth_) return;
  logged_tenth_ = tenth;
  spdlog::info("loading weights: {}% ({}/{} tensors, {} of {}{})", tenth * 10, tensors_done,
               total_tensors_, size_text(bytes_), size_text(total_bytes_),
               eta_text(elapsed, fraction));
}

double ProgressWeightSource::finish() {
  std::lock_guard lock(mu_);
  const auto now = Clock::now();
  bytes_ += pending_bytes_;
  pending_bytes_ = 0;
  if (!seen_.empty()) report(now, seen_.size());
  if (bar_ && !seen_.empty()) std::fprintf(stderr, "\n");
  return std::chrono::duration<double>(last_tensor_ - start_).count();
}

}  // namespace xq
