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
  double bytes_per_token() const override { return fp16_kv_bytes_per_token(cfg_); }
  std::unique_ptr<SequenceCache> new_sequence() const override;

 private:
  ModelConfig cfg_;
};

}  // namespace xq
