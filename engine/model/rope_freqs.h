// The inverse RoPE frequencies a model's layers use, from its config (shared by the CPU and CUDA
// models).
#pragma once

#include <vector>

#include "config/model_config.h"

namespace xq {

struct ModelRopeFreqs {
  std::vector<double> global, local;  // head_dim / 2 each; local: Gemma 3's sliding layers
  // The table layer `l` rotates with.
  const std::vector<double>& for_layer(const ModelConfig& cfg, int l) const;
};

// Throws ConfigError for a rope_scaling type the engine does not implement.
ModelRopeFreqs model_rope_freqs(const ModelConfig& cfg);

}  // namespace xq
