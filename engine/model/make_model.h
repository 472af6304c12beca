// make_model: the model for a device (the CPU reference, or the CUDA engine where this build has
// one), from a config and a weight source.
#pragma once

#include <memory>

#include "engine/model/model.h"
#include "engine/weights/weight_source.h"

namespace xq {

// opts.device is "cpu" or "cuda"; ConfigError for anything else, or for cuda in a build
// without the CUDA backend.
std::unique_ptr<Model> make_model(const ModelConfig& cfg, const WeightSource& src,
                                  const EngineOptions& opts);

// make_model over `src` with loading progress and the time of each phase in the log: reading
// the tensors (with their conversion, and on a GPU their upload, as the model reads them one by
// one) and what follows the last one (cache and workspace set-up).
// `opened_s`: the seconds already spent opening the files, for the total.
std::unique_ptr<Model> make_model_logged(const ModelConfig& cfg, const WeightSource& src,
                                         const EngineOptions& opts, double opened_s);

// The CUDA engine (engine/cuda); in builds without it, throws ConfigError saying so.
std::unique_ptr<Model> make_cuda_model(const ModelConfig& cfg, const WeightSource& src,
                                       const EngineOptions& opts);

}  // namespace xq
