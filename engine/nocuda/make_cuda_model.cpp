// Builds without a CUDA toolkit have no GPU engine: asking for one is a configuration error.
#include "engine/model/make_model.h"

namespace xq {

std::unique_ptr<Model> make_cuda_model(const ModelConfig&, const WeightSource&,
                                       const EngineOptions&) {
  throw ConfigError(
      "--device cuda: this build has no CUDA backend (configure with the CUDA toolkit at "
      "/usr/local/cuda to build it)");
}

}  // namespace xq
