#include <memory>

#include "engine/cache/cache_format.h"
#include "engine/cache/kivi_cache.h"
#include "engine/cache/kv16_cache.h"
#include "engine/cache/xquant_cache.h"
#include "engine/cache/xquant_cl_cache.h"

namespace xq {

// One branch per format; each format's own file holds its type.
std::unique_ptr<CacheFormat> make_cache_format(const CacheOptions& opts, const ModelConfig& cfg,
                                               const KvProjector& projector) {
  if (opts.format == "fp16") return std::make_unique<Kv16Format>(cfg);
  if (opts.format == "kivi") return std::make_unique<KiviFormat>(cfg, opts.bits, opts.group_size);
  if (opts.format == "xquant" || opts.format == "xquant-ch") {
    XQuantOptions x;
    x.bits = opts.bits;
    x.group = opts.group_size;
    x.x_per_channel = opts.format == "xquant-ch";
    x.latent = !x.x_per_channel && resolve_latent(opts.latent, cfg, projector);
    return std::make_unique<XQuantFormat>(cfg, projector, x);
  }
  if (opts.format == "xquant-cl" || opts.format == "xquant-cl-ch") {
    if (opts.latent == "on")
      throw ConfigError("xquant-cl has no latent variant (--xquant-latent on)");
    XQuantCLOptions x;
    x.bits = opts.bits;
    x.group = opts.group_size;
    x.per_channel = opts.format == "xquant-cl-ch";
    return std::make_unique<XQuantCLFormat>(cfg, projector, x);
  }
  throw ConfigError("cache format " + opts.format + " is not built yet");
}

}  // namespace xq
