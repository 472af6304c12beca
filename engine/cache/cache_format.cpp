#include "engine/cache/cache_format.h"

#include <algorithm>

#include "engine/cache/kv16_cache.h"

namespace xq {

double CacheFormat::bytes_per_token() const {
  const ModelConfig& cfg = config();
  double b = 0;
  for (int l = 0; l < cfg.num_layers; ++l)
    if (!cfg.is_sliding(l) || cfg.sliding_window <= 0 || !forgets_outside_window())
      b += layer_bytes_per_token(l);
  return b;
}

double CacheFormat::sliding_bytes_per_token() const {
  const ModelConfig& cfg = config();
  double b = 0;
  if (cfg.sliding_window <= 0 || !forgets_outside_window()) return b;
  for (int l = 0; l < cfg.num_layers; ++l)
    if (cfg.is_sliding(l)) b += layer_bytes_per_token(l);
  return b;
}

int CacheFormat::sliding_tokens() const {
  if (sliding_bytes_per_token() <= 0) return 0;
  return config().sliding_window - 1 + sliding_slack_tokens();
}

double CacheFormat::sequence_bytes(int64_t tokens) const {
  const int64_t held = std::min<int64_t>(tokens, sliding_tokens());
  return static_cast<double>(tokens) * bytes_per_token() +
         static_cast<double>(held) * sliding_bytes_per_token();
}

double CacheFormat::mean_bytes_per_token(int64_t tokens) const {
  return tokens > 0 ? sequence_bytes(tokens) / static_cast<double>(tokens) : 0.0;
}

double fp16_kv_bytes_per_token(const ModelConfig& cfg, int64_t tokens) {
  return Kv16Format(cfg).mean_bytes_per_token(tokens);
}

}  // namespace xq
