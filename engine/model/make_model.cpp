#include "engine/model/make_model.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>

#include "engine/model/cpu_model.h"
#include "engine/weights/load_progress.h"

namespace xq {

std::unique_ptr<Model> make_model(const ModelConfig& cfg, const WeightSource& src,
                                  const EngineOptions& opts) {
  if (opts.device == "cuda") return make_cuda_model(cfg, src, opts);
  if (opts.device != "cpu") throw ConfigError("unknown device " + opts.device);
  return std::make_unique<CpuModel>(cfg, src, opts.cache);
}

std::unique_ptr<Model> make_model_logged(const ModelConfig& cfg, const WeightSource& src,
                                         const EngineOptions& opts, double opened_s) {
  const auto start = std::chrono::steady_clock::now();
  // A bar where a person watches (a terminal; log collectors never have one), log lines elsewhere.
  ProgressWeightSource progress(src, isatty(STDERR_FILENO) == 1);
  std::unique_ptr<Model> model = make_model(cfg, progress, opts);
  const double tensors_s = progress.finish();
  const double built_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // What each phase holds differs: the CUDA engine uploads each tensor (and builds a layer's
  // latent basis) as it reads it; the CPU model builds the latent bases with its cache format.
  const bool cuda = opts.device == "cuda";
  spdlog::info(
      "load phases: open {:.2f}s, tensors ({}) {:.2f}s, after the last tensor ({}) "
      "{:.2f}s; {:.2f}s in all",
      opened_s, cuda ? "read, convert, upload, latent bases" : "read, convert", tensors_s,
      cuda ? "cache and workspace set-up" : "latent bases, cache set-up", built_s - tensors_s,
      opened_s + built_s);
  return model;
}

}  // namespace xq
