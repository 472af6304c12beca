#include "engine/cuda/cuda_model.h"
#include "engine/model/make_model.h"

namespace xq {

std::unique_ptr<Model> make_cuda_model(const ModelConfig& cfg, const WeightSource& src,
                                       const EngineOptions& opts) {
  return std::make_unique<cuda::CudaModel>(cfg, src, opts);
}

}  // namespace xq
