// XQuantCLFormat: XQuant-CL, cross-layer deltas of X: layer 0 caches X, every later layer the
// quantized difference between its X and the running reconstruction (the accumulator).
#pragma once

#include <memory>
#include <string>

#include "engine/cache/cache_format.h"

namespace xq {

struct XQuantCLOptions {
  int bits = 2;             // the deltas' width: 2/3/4/8, or 16 (fp16, the diagnostic)
  int group = 128;          // values per quantization group
  int base_bits = 0;        // layer 0's width; 0: max(bits, 4) (see xquant_cl_cache.cpp)
  bool fold_values = true;  // V folded after the softmax; false rematerializes V
  // Deltas in per-channel groups of G tokens with an fp16 window of X ("xquant-cl-ch",
  // xquant_cl_channel.cpp) instead of per-token groups.
  bool per_channel = false;
};

class XQuantCLFormat : public CacheFormat {
 public:
  XQuantCLFormat(const ModelConfig& cfg, const KvProjector& proj, const XQuantCLOptions& opts);
  std::string name() const override {
    return (opts_.per_channel ? "xquant-cl-ch:" : "xquant-cl:") + std::to_string(opts_.bits);
  }
  double bytes_per_token() const override;
  double window_bytes_max() const override;
  std::unique_ptr<SequenceCache> new_sequence() const override;
  int base_bits() const { return opts_.base_bits; }

 private:
  ModelConfig cfg_;
  const KvProjector& proj_;
  XQuantCLOptions opts_;
};

}  // namespace xq
