#include "engine/cuda/gpu_cache_layout.h"

#include "engine/cache/quantizer.h"
#include "engine/cache/xquant_cache.h"

namespace xq::cuda {
namespace {

bool gpu_bits(int b) { return b == 2 || b == 3 || b == 4 || b == 8 || b == 16; }

// The GQA latent's row [X U_k, X U_v] at `bits`: one quantized row where the two latents' groups
// stay apart (every group inside one latent, as the CPU groups each latent alone) and no K
// channel is kept in fp16; else one segment per part: the fp16 K channels, the rest of the K
// latent, the V latent.
std::vector<RowSegment> latent_segments(int kv, int bits, int group, int lead) {
  if (bits == 16) return {{0, {2 * kv, 16, group}, 0}};
  if (lead == 0 && kv % group == 0) return {{0, {2 * kv, bits, group}, 0}};
  std::vector<RowSegment> s;
  if (lead > 0) s.push_back({0, {lead, 16, group}, 0});
  s.push_back({lead, {kv - lead, bits, group}, 0});
  s.push_back({kv, {kv, bits, group}, 0});
  return s;
}

void check_bits(const char* what, int bits) {
  if (!gpu_bits(bits))
    throw ConfigError(std::string("xquant cache: ") + what + " must be 2, 3, 4, 8 or 16, got " +
                      std::to_string(bits));
}

// A layer's parts: per-token row segments, and the columns in per-channel blocks.
struct LayerParts {
  std::vector<RowSegment> rows;
  std::vector<ChannelSegment> channel;
};

// Validates the xquant options the GPU runs; fills kind, name, row width and fp16 channels, and
// whether the K latent is per channel.
bool xquant_shape(const ModelConfig& cfg, const CacheOptions& opts, bool x_per_channel,
                  GpuCacheLayout& out) {
  check_cache_options(opts, cfg);
  const bool k_per_token = resolve_latent_k_per_token(opts.latent_k);
  check_bits("bits", opts.bits);
  if (opts.high_precision.layers > 0) check_bits("high-precision bits", opts.high_precision.bits);
  if (opts.group_size < 1 || opts.group_size > 1024)
    throw ConfigError("xquant cache: group size must be 1..1024 on the GPU, got " +
                      std::to_string(opts.group_size));
  if (opts.latent != "on" && opts.latent != "off" && opts.latent != "auto")
    throw ConfigError("xquant latent must be on, off or auto, got '" + opts.latent + "'");
  const int kv = cfg.kv_dim(), lead = opts.latent_k_fp16_channels;
  // The latent is worth it where the two latents together are narrower than X (GQA); xquant-ch
  // groups X itself.
  const bool latent = !x_per_channel &&
                      (opts.latent == "on" || (opts.latent == "auto" && 2 * kv < cfg.hidden_size));
  if (latent && kv > cfg.hidden_size)
    throw ConfigError("xquant latent: kv_dim exceeds hidden_size; the latent would be wider");
  if (lead > 0 && !latent)
    throw ConfigError(
        "xquant cache: fp16 K latent channels (--xquant-latent-k-fp16-channels) need the GQA "
        "latent (--xquant-latent on or auto on a GQA model)");
  if (lead < 0 || lead >= kv)
    throw ConfigError("xquant cache: fp16 K latent channels must be in [0, kv_dim = " +
                      std::to_string(kv) + "), got " + std::to_string(lead));
  out.kind = latent ? GpuCacheKind::XLatent : GpuCacheKind::XQuant;
  out.row_width = latent ? 2 * kv : cfg.hidden_size;
  out.k_fp16_channels = latent ? lead : 0;
  std::string name = !latent       ? (x_per_channel ? "xquant-ch:" : "xquant:")
                     : k_per_token ? "xquant-latent-tok:"
                                   : "xquant-latent:";
  if (lead > 0) name.insert(name.size() - 1, "-k16x" + std::to_string(lead));
  out.name = name + std::to_string(opts.bits);
  return latent && !k_per_token;
}

ChannelSegment channel_segment(int col, int width, int bits, int group) {
  ChannelSegment c;
  c.col = col;
  c.layout = {width, bits, group};
  return c;
}

// One xquant layer at `bits`: X per token or per channel, or the latent with its K per token
// or per channel. A 16-bit layer is fp16 rows whatever the grouping (as on the CPU).
LayerParts xquant_layer(const ModelConfig& cfg, const GpuCacheLayout& out, bool x_per_channel,
                        bool k_per_channel, int bits, int G) {
  const int kv = cfg.kv_dim(), lead = out.k_fp16_channels;
  if (out.kind == GpuCacheKind::XQuant) {
    if (x_per_channel && bits != 16) return {{}, {channel_segment(0, cfg.hidden_size, bits, G)}};
    return {{{0, {cfg.hidden_size, bits, G}, 0}}, {}};
  }
  if (!k_per_channel || bits == 16) return {latent_segments(kv, bits, G, lead), {}};
  LayerParts p;
  if (lead > 0) p.rows.push_back({0, {lead, 16, G}, 0});
  p.rows.push_back({kv, {kv, bits, G}, 0});
  p.channel.push_back(channel_segment(lead, kv - lead, bits, G));
  return p;
}

// KIVI: K per channel, V per token; 2/3/4/8 bits as the CPU format takes them.
LayerParts kivi_layer(const ModelConfig& cfg, int bits, int G) {
  const int kv = cfg.kv_dim();
  return {{{kv, {kv, bits, G}, 0}}, {channel_segment(0, kv, bits, G)}};
}

void kivi_shape(const ModelConfig& cfg, const CacheOptions& opts, GpuCacheLayout& out) {
  check_cache_options(opts, cfg);
  for (int b : {opts.bits, opts.high_precision.layers > 0 ? opts.high_precision.bits : 2})
    if (b != 2 && b != 3 && b != 4 && b != 8)
      throw ConfigError("kivi cache: bits (and high-precision bits) must be 2, 3, 4 or 8, got " +
                        std::to_string(b));
  out.kind = GpuCacheKind::Kivi;
  out.row_width = 2 * cfg.kv_dim();
  out.name = "kivi:" + std::to_string(opts.bits);
}

// The per-channel parts' page placement (after the row segments), window slot offsets, and the
// CPU's window bytes: (G - 1) fp16 rows beyond their quantized share per channel segment, and
// KIVI's G fp16 values beyond their quantized rows.
void place_windows(GpuCacheLayout& out, size_t& slot, int layer, size_t& page_at) {
  const int G = out.group;
  for (ChannelSegment& c : out.channel[layer]) {
    const ChannelBlockLayout& b = c.layout;
    if (!b.group_fits_pages())
      throw ConfigError("--cache-group-size " + std::to_string(G) +
                        ": the GPU's per-channel blocks (kivi, xquant-ch, --xquant-latent-k "
                        "channel) need a group size that is a multiple of 16 or divides 16 "
                        "(1, 2, 4, 8, 16, 32, 64, 128, ...)");
    c.offset = page_at;
    page_at += b.page_bytes();
    c.window_offset = slot;
    slot += (static_cast<size_t>(G) * b.width * 2 + 15) / 16 * 16;
    const double share =
        static_cast<double>(quantized_bytes(static_cast<size_t>(G) * b.width, b.bits, G)) / G;
    out.window_bytes_max += (G - 1) * (2.0 * b.width - share);
  }
  if (out.kind == GpuCacheKind::Kivi && out.fp16_window) {
    const QuantRowLayout& v = out.segments[layer][0].layout;
    out.value_window.push_back(slot);
    slot += (static_cast<size_t>(G) * v.width * 2 + 15) / 16 * 16;
    out.window_bytes_max += G * (2.0 * v.width - static_cast<double>(v.bytes()));
  }
}

}  // namespace

bool GpuCacheLayout::single_segment() const {
  for (const auto& c : channel)
    if (!c.empty()) return false;
  for (const auto& s : segments)
    if (s.size() != 1) return false;
  return true;
}

size_t GpuCacheLayout::global_page_bytes() const {
  return page_bytes_all_layers() - ring_page_bytes();
}

size_t GpuCacheLayout::ring_page_bytes() const {
  size_t b = 0;
  for (int l = 0; l < layers(); ++l)
    if (ring_layer(l)) b += page_bytes(l);
  return b;
}

size_t GpuCacheLayout::pool_begin(int layer, int64_t pages, int64_t ring_pages) const {
  const bool ring = ring_layer(layer);
  size_t before = 0;  // the page bytes of the earlier layers of the same pool
  for (int l = 0; l < layer; ++l)
    if (ring_layer(l) == ring) before += page_bytes(l);
  if (!ring) return static_cast<size_t>(pages) * before;
  return static_cast<size_t>(pages) * global_page_bytes() +
         static_cast<size_t>(ring_pages) * before;
}

GpuCacheLayout gpu_cache_layout(const ModelConfig& cfg, const CacheOptions& opts) {
  GpuCacheLayout out;
  const int layers = cfg.num_layers, kv = cfg.kv_dim(), G = opts.group_size;
  std::vector<size_t> page_bytes(layers);
  if (opts.format == "fp16") {
    out.name = "fp16";
    // A page's layer part: its K rows, then its V rows, fp16.
    for (int l = 0; l < layers; ++l) page_bytes[l] = size_t{2} * 2 * kv * kPageRows;
  } else if (opts.format == "xquant" || opts.format == "xquant-ch" || opts.format == "kivi") {
    const bool kivi = opts.format == "kivi", x_per_channel = opts.format == "xquant-ch";
    bool k_per_channel = false;
    if (kivi)
      kivi_shape(cfg, opts, out);
    else
      k_per_channel = xquant_shape(cfg, opts, x_per_channel, out);
    out.group = G;
    out.fp16_window = opts.fp16_window;
    size_t slot = 0;
    for (int l = 0; l < layers; ++l) {
      const int bits = opts.high_precision.of(l, opts.bits);
      LayerParts parts = kivi ? kivi_layer(cfg, bits, G)
                              : xquant_layer(cfg, out, x_per_channel, k_per_channel, bits, G);
      size_t at = 0;
      for (RowSegment& seg : parts.rows) {
        seg.offset = at;
        at += seg.layout.bytes() * kPageRows;
      }
      out.segments.push_back(std::move(parts.rows));
      out.channel.push_back(std::move(parts.channel));
      place_windows(out, slot, l, at);
      page_bytes[l] = at;
    }
    out.window_slot_bytes = slot;
  } else if (opts.format.rfind("xquant-cl", 0) == 0) {
    fill_cl_layout(cfg, opts, out);
    for (int l = 0; l < layers; ++l) {
      for (const RowSegment& r : out.segments[l]) page_bytes[l] += r.layout.bytes() * kPageRows;
      for (const ChannelSegment& c : out.channel[l]) page_bytes[l] += c.layout.page_bytes();
    }
  } else {
    throw ConfigError("cache format " + opts.format +
                      " is not on the GPU engine (it runs fp16, kivi, xquant, xquant-ch and the "
                      "xquant-cl forms; the others run with --device cpu)");
  }
  out.layer_offset.assign(1, 0);
  for (size_t b : page_bytes) out.layer_offset.push_back(out.layer_offset.back() + b);
  return out;
}

}  // namespace xq::cuda
