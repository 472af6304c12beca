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
  // xquant-cl[-ch] take deltas on the pre-norm residual stream; the -normed names on X.
  if (opts.format.rfind("xquant-cl", 0) == 0) {
    std::string kind = opts.format;
    const std::string normed = "-normed";
    const bool on_x = kind.size() > normed.size() &&
                      kind.compare(kind.size() - normed.size(), normed.size(), normed) == 0;
    if (on_x) kind.resize(kind.size() - normed.size());
    if (kind != "xquant-cl" && kind != "xquant-cl-ch")
      throw ConfigError("cache format " + opts.format + " is not built yet");
    if (opts.latent == "on")
      throw ConfigError(opts.format + " has no latent variant (--xquant-latent on)");
    XQuantCLOptions x;
    x.bits = opts.bits;
    x.group = opts.group_size;
    x.per_channel = kind == "xquant-cl-ch";
    x.residual = !on_x;
    return std::make_unique<XQuantCLFormat>(cfg, projector, x);
  }
  throw ConfigError("cache format " + opts.format + " is not built yet");
}

}  // namespace xq
