#include "engine/model/rope_freqs.h"

#include "kernels/cpu/rope.h"

namespace xq {
namespace {

RopeFreqParams rope_params(const ModelConfig& cfg, double theta, bool scaled) {
  RopeFreqParams p;
  p.head_dim = cfg.head_dim;
  p.theta = theta;
  if (scaled && cfg.rope_scaling.type == "linear") p.kind = RopeKind::Linear;
  if (scaled && cfg.rope_scaling.type == "llama3") p.kind = RopeKind::Llama3;
  p.factor = cfg.rope_scaling.factor;
  p.low_freq_factor = cfg.rope_scaling.low_freq_factor;
  p.high_freq_factor = cfg.rope_scaling.high_freq_factor;
  p.original_max_position = cfg.rope_scaling.original_max_position;
  return p;
}

}  // namespace

const std::vector<double>& ModelRopeFreqs::for_layer(const ModelConfig& cfg, int l) const {
  // Gemma 3's sliding-window layers use their own base and no scaling.
  return cfg.arch == Arch::Gemma3 && cfg.is_sliding(l) ? local : global;
}

ModelRopeFreqs model_rope_freqs(const ModelConfig& cfg) {
  if (cfg.rope_scaling.type != "none" && cfg.rope_scaling.type != "linear" &&
      cfg.rope_scaling.type != "llama3") {
    throw ConfigError("rope_scaling type " + cfg.rope_scaling.type + " is not supported");
  }
  ModelRopeFreqs f;
  f.global = rope_inv_freq(rope_params(cfg, cfg.rope_theta, true));
  f.local = rope_inv_freq(rope_params(cfg, cfg.rope_local_theta, false));
  return f;
}

}  // namespace xq
