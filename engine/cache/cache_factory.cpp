#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "engine/cache/cache_format.h"
#include "engine/cache/kivi_cache.h"
#include "engine/cache/kv16_cache.h"
#include "engine/cache/xquant_cache.h"
#include "engine/cache/xquant_cl_cache.h"

namespace xq {

// One branch per format; each format's own file holds its type.
std::unique_ptr<CacheFormat> make_cache_format(const CacheOptions& opts, const ModelConfig& cfg,
                                               const KvProjector& projector) {
  const bool latent_k_per_token = resolve_latent_k_per_token(opts.latent_k);
  if (opts.format == "fp16") return std::make_unique<Kv16Format>(cfg);
  if (opts.format == "kivi") return std::make_unique<KiviFormat>(cfg, opts.bits, opts.group_size);
  if (opts.format == "xquant" || opts.format == "xquant-ch") {
    XQuantOptions x;
    x.bits = opts.bits;
    x.group = opts.group_size;
    x.x_per_channel = opts.format == "xquant-ch";
    x.latent = !x.x_per_channel && resolve_latent(opts.latent, cfg, projector);
    x.latent_k_per_token = x.latent && latent_k_per_token;
    return std::make_unique<XQuantFormat>(cfg, projector, x);
  }
  // xquant-cl[-ch][-residual|-normed]: the suffix picks the stream the deltas are taken on;
  // without one, the grouping's default (cl_default_residual).
  if (opts.format.rfind("xquant-cl", 0) == 0) {
    std::string kind = opts.format;
    std::optional<bool> residual;
    for (const auto& [suffix, on_residual] : {std::pair{"-residual", true}, {"-normed", false}}) {
      const size_t n = std::char_traits<char>::length(suffix);
      if (kind.size() > n && kind.compare(kind.size() - n, n, suffix) == 0) {
        kind.resize(kind.size() - n);
        residual = on_residual;
        break;
      }
    }
    if (kind != "xquant-cl" && kind != "xquant-cl-ch")
      throw ConfigError("cache format " + opts.format + " is not built yet");
    if (opts.latent == "on")
      throw ConfigError(opts.format +
                        " has no latent variant (--xquant-latent on): each layer's SVD basis is "
                        "its own, so latents of two layers share no space to take a delta in");
    XQuantCLOptions x;
    x.bits = opts.bits;
    x.group = opts.group_size;
    x.per_channel = kind == "xquant-cl-ch";
    x.residual = residual.value_or(cl_default_residual(x.per_channel));
    return std::make_unique<XQuantCLFormat>(cfg, projector, x);
  }
  throw ConfigError("cache format " + opts.format + " is not built yet");
}

}  // namespace xq
