// Kv16Format: the fp16 K/V cache, the baseline every other format is measured against.
#pragma once

#include <memory>
#include <string>

#include "engine/cache/cache_format.h"

namespace xq {

class Kv16Format : public CacheFormat {
 public:
  explicit Kv16Format(const ModelConfig& cfg) : cfg_(cfg) {}
  std::string name() const override { return "fp16"; }
  double layer_bytes_per_token(int) const override { return 2.0 * 2.0 * cfg_.kv_dim(); }
  std::unique_ptr<SequenceCache> new_sequence() const override;
  const ModelConfig& config() const override { return cfg_; }

 private:
  ModelConfig cfg_;
};

}  // namespace xq
