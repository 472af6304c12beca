// KiviFormat: the quantized-KV baseline of KIVI (arXiv 2402.02750): keys per channel, values per
// token, in groups, with the most recent tokens in fp16 until a key group fills.
#pragma once

#include <memory>
#include <string>

#include "engine/cache/cache_format.h"

namespace xq {

class KiviFormat : public CacheFormat {
 public:
  // bits 2/3/4 (8 also works), group size G (KIVI uses 32 or 128); throws ConfigError otherwise.
  // hp: the first layers at other bits; fp16_window false: no fp16 residual (values quantized on
  // append, an unfilled key block read quantized as a partial block).
  KiviFormat(const ModelConfig& cfg, int bits, int group, HighPrecisionLayers hp = {},
             bool fp16_window = true);
  std::string name() const override { return "kivi:" + std::to_string(bits_); }
  double layer_bytes_per_token(int layer) const override;
  double window_bytes_max() const override;
  std::unique_ptr<SequenceCache> new_sequence() const override;
  const ModelConfig& config() const override { return cfg_; }

 protected:
  // A sliding layer drops a key block only once all of its tokens left the window.
  int sliding_slack_tokens() const override { return group_ - 1; }

 private:
  ModelConfig cfg_;
  int bits_, group_;
  HighPrecisionLayers hp_;
  bool fp16_window_;
};

}  // namespace xq
