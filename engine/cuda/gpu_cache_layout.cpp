#include "engine/cuda/gpu_cache_layout.h"

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

// Validates the xquant options the GPU runs; fills kind, name, row width and fp16 channels.
void xquant_shape(const ModelConfig& cfg, const CacheOptions& opts, GpuCacheLayout& out) {
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
  // The latent is worth it where the two latents together are narrower than X (GQA).
  const bool latent = opts.latent == "on" || (opts.latent == "auto" && 2 * kv < cfg.hidden_size);
  if (latent && kv > cfg.hidden_size)
    throw ConfigError("xquant latent: kv_dim exceeds hidden_size; the latent would be wider");
  if (latent && !k_per_token)
    throw ConfigError(
        "--xquant-latent-k channel is not on the GPU engine yet: the per-channel K latent "
        "quantizes blocks of G tokens per channel and keeps the unfilled block in fp16, which "
        "the GPU's pages of final per-token rows do not hold (it runs the per-token K latent, "
        "--xquant-latent-k token or auto, with or without --xquant-latent-k-fp16-channels; the "
        "per-channel one runs with --device cpu)");
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
  std::string name = latent ? "xquant-latent-tok:" : "xquant:";
  if (lead > 0) name.insert(name.size() - 1, "-k16x" + std::to_string(lead));
  out.name = name + std::to_string(opts.bits);
}

}  // namespace

bool GpuCacheLayout::single_segment() const {
  for (const auto& s : segments)
    if (s.size() != 1) return false;
  return true;
}

GpuCacheLayout gpu_cache_layout(const ModelConfig& cfg, const CacheOptions& opts) {
  GpuCacheLayout out;
  const int layers = cfg.num_layers, kv = cfg.kv_dim(), G = opts.group_size;
  std::vector<size_t> page_bytes(layers);
  if (opts.format == "fp16") {
    out.name = "fp16";
    // A page's layer part: its K rows, then its V rows, fp16.
    for (int l = 0; l < layers; ++l) page_bytes[l] = size_t{2} * 2 * kv * kPageRows;
  } else if (opts.format == "xquant") {
    xquant_shape(cfg, opts, out);
    for (int l = 0; l < layers; ++l) {
      const int bits = opts.high_precision.of(l, opts.bits);
      std::vector<RowSegment> s = out.kind == GpuCacheKind::XLatent
                                      ? latent_segments(kv, bits, G, out.k_fp16_channels)
                                      : std::vector<RowSegment>{{0, {cfg.hidden_size, bits, G}, 0}};
      size_t at = 0;
      for (RowSegment& seg : s) {
        seg.offset = at;
        at += seg.layout.bytes() * kPageRows;
      }
      page_bytes[l] = at;
      out.segments.push_back(std::move(s));
    }
  } else if (opts.format.rfind("xquant-cl", 0) == 0) {
    fill_cl_layout(cfg, opts, out);
    for (int l = 0; l < layers; ++l) page_bytes[l] = out.segments[l][0].layout.bytes() * kPageRows;
  } else {
    throw ConfigError("cache format " + opts.format +
                      " is not on the GPU engine yet (it runs fp16, xquant and the per-token "
                      "xquant-cl forms; the others run with --device cpu)");
  }
  out.layer_offset.assign(1, 0);
  for (size_t b : page_bytes) out.layer_offset.push_back(out.layer_offset.back() + b);
  return out;
}

}  // namespace xq::cuda
