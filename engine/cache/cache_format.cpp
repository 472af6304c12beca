#include "engine/cache/cache_format.h"

namespace xq {

double fp16_kv_bytes_per_token(const ModelConfig& cfg) {
  // K and V, 2 bytes each element, every layer (sliding-window layers count in full here: the
  // baseline is the plain fp16 cache the paper compares against).
  return 2.0 * 2.0 * cfg.kv_dim() * cfg.num_layers;
}

}  // namespace xq
