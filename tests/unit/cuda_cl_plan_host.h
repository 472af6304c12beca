// What the host replays of XQuant-CL's GPU plan share (engine_cuda_cl_plan_test.cpp, the
// per-token forms; engine_cuda_cl_channel_plan_test.cpp, the -ch forms): the width of their
// rows, a lossy stand-in for the quantizer, each token's layer inputs, and the model shape.
#pragma once

#include <cmath>

#include "config/model_config.h"

namespace xq::cuda::cl_plan_host {

constexpr int kHidden = 8;

inline float quant(float v) { return std::round(v * 8.0f) / 8.0f; }  // lossy, exact in float

// The layer input S_l of a token (X or the residual stream; the plan does not care which). Out
// of line: inlined at two call sites, the compiler may contract its products differently, and
// rows are compared bit for bit.
[[gnu::noinline]] inline float source(int seq, int pos, int layer, int j) {
  return std::sin(0.37f * seq + 0.11f * pos + 0.7f * layer + 0.05f * j) * (1.0f + layer);
}

// Five layers; with sliding layers, Gemma's two chains.
inline ModelConfig config(bool sliding) {
  ModelConfig cfg;
  cfg.num_layers = 5;
  cfg.hidden_size = kHidden;
  cfg.num_heads = 2;
  cfg.num_kv_heads = 2;
  cfg.head_dim = 4;
  if (sliding) {
    cfg.sliding_window = 8;
    cfg.layer_is_sliding = {true, false, true, true, false};
  }
  return cfg;
}

}  // namespace xq::cuda::cl_plan_host
