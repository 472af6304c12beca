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
void check_cache_options(const CacheOptions& o, const ModelConfig& cfg) {
  const HighPrecisionLayers& hp = o.high_precision;
  if (hp.layers < 0 || hp.layers >= cfg.num_layers)
    throw ConfigError("high-precision layers must be in [0, " + std::to_string(cfg.num_layers) +
                      ") (the model's layers), got " + std::to_string(hp.layers));
  if (hp.layers > 0 && o.format == "fp16")
    throw ConfigError("high-precision layers do not apply to the fp16 cache");
  if (o.latent_k_fp16_channels != 0 && o.format != "xquant")
    throw ConfigError("fp16 K latent channels apply to --cache xquant only, not " + o.format);
  if (o.cl_base_bits != 0 && o.format.rfind("xquant-cl", 0) != 0)
    throw ConfigError("the XQuant-CL base bits apply to the xquant-cl formats only, not " +
                      o.format);
}

// One branch per format; each format's own file holds its type.
std::unique_ptr<CacheFormat> make_cache_format(const CacheOptions& opts, const ModelConfig& cfg,
                                               const KvProjector& projector) {
  const bool latent_k_per_token = resolve_latent_k_per_token(opts.latent_k);
  if (opts.format == "fp16") return std::make_unique<Kv16Format>(cfg);
  check_cache_options(opts, cfg);
  if (opts.format == "kivi") {
    return std::make_unique<KiviFormat>(cfg, opts.bits, opts.group_size, opts.high_precision,
                                        opts.fp16_window);
  }
  if (opts.format == "xquant" || opts.format == "xquant-ch") {
    XQuantOptions x;
    x.bits = opts.bits;
    x.group = opts.group_size;
    x.x_per_channel = opts.format == "xquant-ch";
    x.latent = !x.x_per_channel && resolve_latent(opts.latent, cfg, projector);
    x.latent_k_per_token = x.latent && latent_k_per_token;
    x.hp = opts.high_precision;
    x.k_fp16_channels = opts.latent_k_fp16_channels;
    x.fp16_window = opts.fp16_window;
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
    XQuantCLOptions x;
    x.bits = opts.bits;
    x.group = opts.group_size;
    x.per_channel = kind == "xquant-cl-ch";
    // The latent (GQA) form takes its deltas on X: "auto" gives it to the forms on X
    // (xquant-cl, xquant-cl-ch-normed) and keeps the residual-stream ones X-wide; "on" gives it
    // to the default-named forms too (xquant-cl-ch then takes X).
    const bool on_x = !residual.value_or(cl_default_residual(x.per_channel));
    x.latent = opts.latent == "on" || (on_x && resolve_latent(opts.latent, cfg, projector));
    x.residual = residual.value_or(!x.latent && cl_default_residual(x.per_channel));
    x.hp = opts.high_precision;
    x.base_bits = opts.cl_base_bits;
    x.base_latent = opts.cl_base_latent;
    if (x.base_latent && !x.latent)
      throw ConfigError(
          "a latent XQuant-CL base (--xquant-cl-base latent) needs the latent form "
          "(a GQA model, deltas on X)");
    x.fp16_window = opts.fp16_window;
    return std::make_unique<XQuantCLFormat>(cfg, projector, x);
  }
  throw ConfigError("cache format " + opts.format + " is not built yet");
}

}  // namespace xq
