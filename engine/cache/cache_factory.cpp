#include <memory>

#include "engine/cache/cache_format.h"
#include "engine/cache/kv16_cache.h"

namespace xq {

// One branch per format; each format's own file holds its type.
std::unique_ptr<CacheFormat> make_cache_format(const CacheOptions& opts, const ModelConfig& cfg,
                                               const KvProjector& projector) {
  if (opts.format == "fp16") return std::make_unique<Kv16Format>(cfg);
  throw ConfigError("cache format " + opts.format + " is not built yet");
}

}  // namespace xq
