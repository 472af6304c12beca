#include "engine/model/make_model.h"

#include "engine/model/cpu_model.h"

namespace xq {

std::unique_ptr<Model> make_model(const ModelConfig& cfg, const WeightSource& src,
                                  const EngineOptions& opts) {
  if (opts.device == "cuda") return make_cuda_model(cfg, src, opts);
  if (opts.device != "cpu") throw ConfigError("unknown device " + opts.device);
  return std::make_unique<CpuModel>(cfg, src, opts.cache);
}

}  // namespace xq
