#include "engine/cuda/gpu_cl_layout.h"

#include <algorithm>
#include <string>

#include "engine/cache/quantizer.h"
#include "engine/cache/xquant_cl_cache.h"
#include "engine/cuda/gpu_cache_layout.h"

namespace xq::cuda {
namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() > tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

void check_bits(const char* what, int bits, int group) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8 && bits != 16)
    throw ConfigError(std::string("xquant-cl cache: ") + what + " must be 2, 3, 4, 8 or 16, got " +
                      std::to_string(bits));
  if (bits != 16 && (group < 1 || group > 1024))
    throw ConfigError("xquant-cl cache: group size must be 1..1024 on the GPU, got " +
                      std::to_string(group));
}

// The -ch forms' windows: every layer's newest < G rows of S (X-wide whatever the layer stores;
// fp16 X, or the fp32 residual stream as cl_window_value_bytes) in the sequence's slot, and the
// window bytes the CPU format reports: (G - 1) rows of S beyond their per-token bytes per layer.
void place_cl_windows(const ModelConfig& cfg, GpuCacheLayout& out) {
  ClShape& s = out.cl;
  const int G = out.group, H = cfg.hidden_size;
  s.window_value_bytes = s.residual ? 4 : 2;
  size_t slot = 0;
  double per_token_beyond = 0;
  for (int l = 0; l < cfg.num_layers; ++l) {
    for (ChannelSegment& c : out.channel[l]) {
      if (!c.layout.group_fits_pages())
        throw ConfigError("--cache-group-size " + std::to_string(G) +
                          ": the GPU's per-channel blocks (kivi, xquant-ch, xquant-cl-ch, "
                          "--xquant-latent-k channel) need a group size that is a multiple of 16 "
                          "or divides 16 (1, 2, 4, 8, 16, 32, 64, 128, ...)");
      c.window_offset = slot;
    }
    s.window_offset.push_back(slot);
    slot += (static_cast<size_t>(G) * H * s.window_value_bytes + 15) / 16 * 16;
    per_token_beyond += static_cast<double>(s.window_value_bytes) * H - cl_layer_bytes(out, l);
  }
  out.window_slot_bytes = slot;
  out.window_bytes_max = (G - 1) * per_token_beyond;
}

}  // namespace

double cl_layer_bytes(const GpuCacheLayout& out, int l) {
  for (const ChannelSegment& c : out.channel[l]) {
    const ChannelBlockLayout& b = c.layout;
    return static_cast<double>(
               quantized_bytes(static_cast<size_t>(b.group) * b.width, b.bits, b.group)) /
           b.group;
  }
  return static_cast<double>(out.segments[l][0].layout.bytes());
}

void fill_cl_layout(const ModelConfig& cfg, const CacheOptions& opts, GpuCacheLayout& out) {
  check_cache_options(opts, cfg);
  // The suffix picks the stream, as make_cache_format reads it.
  std::string kind = opts.format;
  int residual = -1;  // -1: the grouping's default
  if (ends_with(kind, "-residual")) {
    kind.resize(kind.size() - 9);
    residual = 1;
  } else if (ends_with(kind, "-normed")) {
    kind.resize(kind.size() - 7);
    residual = 0;
  }
  const bool per_channel = kind == "xquant-cl-ch";
  if (kind != "xquant-cl" && !per_channel)
    throw ConfigError("cache format " + opts.format + " is not built yet");
  if (opts.latent != "on" && opts.latent != "off" && opts.latent != "auto")
    throw ConfigError("xquant latent must be on, off or auto, got '" + opts.latent + "'");
  const int H = cfg.hidden_size, kv = cfg.kv_dim(), G = opts.group_size;
  // As make_cache_format: without a suffix, the grouping's default stream
  // (cl_default_residual); "auto" gives the latent to the forms on X where the two latents
  // together are narrower than X, "on" to the default-named forms too (which then take X).
  const bool on_x = residual == -1 ? !cl_default_residual(per_channel) : residual == 0;
  const bool latent = opts.latent == "on" || (on_x && opts.latent == "auto" && 2 * kv < H);
  ClShape& s = out.cl;
  s.residual = residual == -1 ? !latent && cl_default_residual(per_channel) : residual == 1;
  s.per_channel = per_channel;
  s.latent = latent;
  if (latent && s.residual)
    throw ConfigError(
        "xquant-cl latent: deltas on the residual stream cannot be cached on the basis of [Wk; "
        "Wv] (the layer's norm of a projected stream is not the projection of the norm); use "
        "the normed X (xquant-cl, xquant-cl-ch-normed) or --xquant-latent off");
  if (latent && 2 * kv > H)
    throw ConfigError("xquant-cl latent: 2 kv_dim = " + std::to_string(2 * kv) +
                      " exceeds hidden_size " + std::to_string(H) +
                      "; the latent delta would be wider than X (an MHA model: use X deltas)");
  if (opts.cl_base_latent && !latent)
    throw ConfigError(
        "a latent XQuant-CL base (--xquant-cl-base latent) needs the latent form "
        "(a GQA model, deltas on X)");
  const HighPrecisionLayers& hp = opts.high_precision;
  const int base_bits = opts.cl_base_bits != 0 ? opts.cl_base_bits
                        : hp.layers > 0        ? hp.bits
                        : opts.bits == 16      ? 16
                                               : std::max(opts.bits, 4);
  check_bits("bits", opts.bits, G);
  check_bits("base bits", base_bits, G);
  if (hp.layers > 0) check_bits("high-precision bits", hp.bits, G);

  // As make_plan in xquant_cl_cache.cpp: a chain's start holds S itself at the base bits; the
  // high-precision layers before the first chain are on their own; only a start that others
  // chain to stays X-wide (the accumulator starts from it) unless the base is latent too.
  s.prev = cl_chains(cfg, hp.layers - 1);
  std::vector<bool> chained_to(cfg.num_layers, false);
  for (int m : s.prev)
    if (m >= 0) chained_to[m] = true;
  s.chains = cfg.sliding_window > 0 ? 2 : 1;
  out.kind = GpuCacheKind::XQuantCL;
  out.row_width = H;  // the rebuilt rows K and V are projected from are X-wide
  out.segments.clear();
  out.channel.clear();
  out.group = G;
  out.fp16_window = opts.fp16_window;
  for (int l = 0; l < cfg.num_layers; ++l) {
    const bool start = s.prev[l] < 0 && l >= hp.layers - 1;
    const int bits = start ? base_bits : hp.of(l, opts.bits);
    const bool x_wide = s.prev[l] < 0 && chained_to[l] && !opts.cl_base_latent;
    s.on_basis.push_back(latent && !x_wide);
    s.bits.push_back(bits);
    s.chain.push_back(cfg.sliding_window > 0 && cfg.is_sliding(l) ? 1 : 0);
    const int width = s.on_basis.back() ? 2 * kv : H;
    // The -ch forms' layers below 16 bits keep their deltas in per-channel blocks; at 16 bits
    // a block is its fp16 rows, which per-token rows hold just as well (as on the CPU).
    if (per_channel && bits != 16) {
      out.segments.push_back({});
      out.channel.push_back({{0, {width, bits, G}, 0, 0}});
    } else {
      out.segments.push_back({{0, {width, bits, G}, 0}});
      out.channel.push_back({});
    }
  }
  if (per_channel) place_cl_windows(cfg, out);
  std::string name = per_channel ? "xquant-cl-ch" : "xquant-cl";
  if (latent) {
    name += opts.cl_base_latent ? "-latent-lb" : "-latent";
  } else if (s.residual != cl_default_residual(per_channel)) {
    name += s.residual ? "-residual" : "-normed";
  }
  out.name = name + ":" + std::to_string(opts.bits);
}

std::vector<ClGroupRows> place_cl_groups(const std::vector<int>& group_rows, int capacity) {
  std::vector<ClGroupRows> out(group_rows.size());
  int total = 0, largest = 0;
  for (int r : group_rows) {
    total += r;
    largest = std::max(largest, r);
  }
  // All resident when they fit; else the rest share the last `largest` rows.
  const int limit = total <= capacity ? capacity : capacity - largest;
  int used = 0;
  for (size_t g = 0; g < group_rows.size(); ++g) {
    if (used + group_rows[g] <= limit) {
      out[g] = {used, true};
      used += group_rows[g];
    } else {
      out[g] = {limit, false};
    }
  }
  return out;
}

}  // namespace xq::cuda
