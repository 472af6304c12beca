// The GPU cache's layout (engine/cuda/gpu_cache_layout.h), which needs no GPU: each layer's bytes
// per token equal the CPU format's for the same options (high-precision first layers, the GQA
// latent, its fp16 K channels, groups that do or do not divide the latent; the per-channel
// formats kivi, xquant-ch and the per-channel K latent at every G the GPU takes, with their fp16
// windows' bytes), the layers' parts of a page follow each other, a layer's row segments and
// per-channel segments tile its part, and what the GPU does not run is refused by name.
// XQuant-CL's forms likewise (per token and per channel, X-wide, residual stream, the GQA latent
// with an X-wide or latent base, base bits, high-precision layers, sliding-window chains; the -ch
// forms' windows of S and their bytes), and where a step's workspace groups keep their
// accumulator rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/cuda/gpu_cache_layout.h"
#include "tests/unit/engine_cache_bench.h"

namespace xq::cuda {
namespace {

using cache_test::make_config;
using cache_test::TestProjector;

CacheOptions xquant(int bits, int group, HighPrecisionLayers hp, bool latent, int lead = 0) {
  CacheOptions o;
  o.format = "xquant";
  o.bits = bits;
  o.group_size = group;
  o.high_precision = hp;
  o.latent = latent ? "on" : "off";
  o.latent_k = "token";
  o.latent_k_fp16_channels = lead;
  return o;
}

std::string describe(const CacheOptions& o) {
  return o.latent + " bits " + std::to_string(o.bits) + " G " + std::to_string(o.group_size) +
         " hp " + std::to_string(o.high_precision.layers) + "@" +
         std::to_string(o.high_precision.bits) + " lead " +
         std::to_string(o.latent_k_fp16_channels);
}

// Offsets are prefix sums; a layer's row segments, then its per-channel segments, tile its part
// of a page, their columns tile the row, and every offset keeps the 4-byte alignment the
// kernels' packed words need; window slots hold G fp16 rows of each per-channel segment (and of
// KIVI's values, with its window).
void expect_consistent(const GpuCacheLayout& g, const ModelConfig& cfg, const std::string& what) {
  ASSERT_EQ(g.layers(), cfg.num_layers) << what;
  EXPECT_EQ(g.layer_offset[0], 0u) << what;
  size_t sum = 0, slot = 0;
  for (int l = 0; l < g.layers(); ++l) {
    EXPECT_EQ(g.layer_offset[l], sum) << what;
    EXPECT_EQ(g.layer_begin(l, 7), 7 * sum) << what;
    size_t at = 0;
    std::vector<std::pair<int, int>> cols;  // (col, width)
    for (const RowSegment& s : g.segments[l]) {
      EXPECT_EQ(s.offset, at) << what << " layer " << l;
      EXPECT_EQ(s.offset % 4, 0u) << what;
      at += s.layout.bytes() * kPageRows;
      cols.push_back({s.col, s.layout.width});
    }
    if (!g.channel.empty()) {
      for (const ChannelSegment& c : g.channel[l]) {
        EXPECT_EQ(c.offset, at) << what << " layer " << l;
        EXPECT_EQ(c.offset % 4, 0u) << what;
        EXPECT_EQ(c.window_offset, slot) << what << " layer " << l;
        at += c.layout.page_bytes();
        slot += (static_cast<size_t>(g.group) * c.layout.width * 2 + 15) / 16 * 16;
        cols.push_back({c.col, c.layout.width});
      }
      if (!g.value_window.empty()) {
        EXPECT_EQ(g.value_window[l], slot) << what << " layer " << l;
        slot += (static_cast<size_t>(g.group) * cfg.kv_dim() * 2 + 15) / 16 * 16;
      }
    }
    std::sort(cols.begin(), cols.end());
    int col = 0;
    for (const auto& [c, w] : cols) {
      EXPECT_EQ(c, col) << what << " layer " << l;
      col += w;
    }
    EXPECT_EQ(at, g.page_bytes(l)) << what << " layer " << l;
    EXPECT_EQ(col, g.row_width) << what << " layer " << l;
    EXPECT_EQ(g.page_bytes(l) % 4, 0u) << what;
    sum += g.page_bytes(l);
  }
  EXPECT_EQ(g.page_bytes_all_layers(), sum) << what;
  EXPECT_EQ(g.window_slot_bytes, slot) << what;  // each window 16-byte aligned
}

TEST(GpuCacheLayout, LayerBytesAndNamesEqualTheCpuFormats) {
  for (const char* kind : {"mha", "gqa"}) {
    const ModelConfig cfg = make_config(kind);
    const TestProjector proj(cfg, false);
    const bool latent = std::string(kind) == "gqa";  // kv_dim 32 against hidden 128
    for (int bits : {2, 3, 4, 8, 16}) {
      for (HighPrecisionLayers hp : {HighPrecisionLayers{0, 4}, HighPrecisionLayers{1, 4},
                                     HighPrecisionLayers{2, 8}, HighPrecisionLayers{2, 16}}) {
        // 24 divides neither X nor a latent: partial last groups, the latent in two segments.
        for (int group : {16, 24}) {
          for (int lead : {0, 1, 5}) {
            if (lead > 0 && !latent) continue;
            const CacheOptions o = xquant(bits, group, hp, latent, lead);
            const std::string what = std::string(kind) + " " + describe(o);
            const auto cpu = make_cache_format(o, cfg, proj);
            const GpuCacheLayout gpu = gpu_cache_layout(cfg, o);
            EXPECT_EQ(gpu.kind, latent ? GpuCacheKind::XLatent : GpuCacheKind::XQuant) << what;
            EXPECT_EQ(gpu.name, cpu->name()) << what;
            for (int l = 0; l < cfg.num_layers; ++l)
              EXPECT_DOUBLE_EQ(static_cast<double>(gpu.page_bytes(l)) / kPageRows,
                               cpu->layer_bytes_per_token(l))
                  << what << " layer " << l;
            EXPECT_EQ(cpu->window_bytes_max(), 0.0) << what;  // per-token rows: no fp16 window
            expect_consistent(gpu, cfg, what);
          }
        }
      }
    }
  }
}

TEST(GpuCacheLayout, HighPrecisionLayersComeFirstAtTheirBits) {
  const ModelConfig cfg = make_config("mha");  // X 64 wide, 3 layers
  const GpuCacheLayout g = gpu_cache_layout(cfg, xquant(2, 16, {1, 4}, false));
  // 2 bits: 4 words + 4 fp16 scale/zero pairs = 32 bytes a row; 4 bits: 8 words + 4 pairs = 48.
  EXPECT_EQ(g.page_bytes(0), 48u * kPageRows);
  EXPECT_EQ(g.page_bytes(1), 32u * kPageRows);
  EXPECT_EQ(g.page_bytes(2), 32u * kPageRows);
  EXPECT_EQ(g.layer_offset, (std::vector<size_t>{0, 768, 1280, 1792}));
  EXPECT_EQ(g.layer_begin(2, 10), 12800u);
  EXPECT_EQ(g.segments[0][0].layout.bits, 4);
  EXPECT_EQ(g.segments[1][0].layout.bits, 2);
  EXPECT_TRUE(g.single_segment());
}

TEST(GpuCacheLayout, LatentRowsSplitOnlyWhereTheirGroupsWould) {
  const ModelConfig cfg = make_config("gqa");  // kv_dim 32
  // Groups inside each latent: one row, as the fused decode kernel reads it.
  EXPECT_TRUE(gpu_cache_layout(cfg, xquant(2, 16, {}, true)).single_segment());
  // A group would straddle the two latents: K and V apart.
  const GpuCacheLayout split = gpu_cache_layout(cfg, xquant(2, 24, {}, true));
  ASSERT_EQ(split.segments[0].size(), 2u);
  EXPECT_EQ(split.segments[0][1].col, 32);
  // The fp16 K channels: fp16, the rest of the K latent, the V latent.
  const GpuCacheLayout lead = gpu_cache_layout(cfg, xquant(3, 16, {2, 16}, true, 1));
  ASSERT_EQ(lead.segments[2].size(), 3u);
  EXPECT_EQ(lead.segments[2][0].layout.bits, 16);
  EXPECT_EQ(lead.segments[2][0].layout.width, 1);
  EXPECT_EQ(lead.segments[2][1].layout.width, 31);
  EXPECT_EQ(lead.segments[2][2].col, 32);
  EXPECT_EQ(lead.segments[0].size(), 1u);  // a 16-bit layer is fp16 whole
  EXPECT_EQ(lead.name, "xquant-latent-tok-k16x1:3");
}

TEST(GpuCacheLayout, Fp16KeepsKAndVPerLayer) {
  const ModelConfig cfg = make_config("gqa");
  CacheOptions o;
  const GpuCacheLayout g = gpu_cache_layout(cfg, o);
  EXPECT_EQ(g.kind, GpuCacheKind::Kv16);
  for (int l = 0; l < cfg.num_layers; ++l)
    EXPECT_EQ(g.page_bytes(l), size_t{2} * 2 * cfg.kv_dim() * kPageRows);
}

CacheOptions per_channel(const std::string& format, int bits, int group, HighPrecisionLayers hp,
                         bool window, int lead = 0) {
  CacheOptions o = xquant(bits, group, hp, format == "latent", lead);
  o.format = format == "latent" ? "xquant" : format;
  o.latent_k = "channel";
  o.fp16_window = window;
  return o;
}

// The per-channel formats: a page's bytes are the CPU's per-token bytes of its 16 tokens, and
// the fp16 windows the scheduler keeps aside per sequence are the CPU's. Where a block's
// parameters or its 16 tokens' codes cannot be split evenly over its pages (a channel count
// that the block's pages do not divide, as the K latent's after an odd number of fp16
// channels), a page rounds up by less than 6 bytes (3/8 of a byte per token).
TEST(GpuCacheLayout, PerChannelFormatsBytesAndWindowsEqualTheCpuFormats) {
  struct Form {
    const char* kind;
    std::string format;
    int lead;
  };
  for (const Form& f : {Form{"mha", "kivi", 0}, Form{"gqa", "kivi", 0}, Form{"mha", "xquant-ch", 0},
                        Form{"gqa", "xquant-ch", 0}, Form{"gqa", "latent", 0},
                        Form{"gqa", "latent", 1}, Form{"gqa", "latent", 4}}) {
    const ModelConfig cfg = make_config(f.kind);
    const TestProjector proj(cfg, false);
    const bool kivi = f.format == "kivi";
    std::vector<int> widths = {16, 8, 4, 3, 2};
    if (kivi) widths.erase(widths.begin());  // KIVI has no 16-bit form on the CPU either
    for (int bits : widths) {
      for (HighPrecisionLayers hp :
           {HighPrecisionLayers{0, 4}, HighPrecisionLayers{1, 4}, HighPrecisionLayers{2, 8}}) {
        for (int group : {1, 4, 8, 16, 32, 64, 128}) {
          for (bool window : {true, false}) {
            const CacheOptions o = per_channel(f.format, bits, group, hp, window, f.lead);
            const std::string what =
                f.format + " " + f.kind + " " + describe(o) + " window " + std::to_string(window);
            const auto cpu = make_cache_format(o, cfg, proj);
            const GpuCacheLayout gpu = gpu_cache_layout(cfg, o);
            EXPECT_EQ(gpu.name, cpu->name()) << what;
            EXPECT_EQ(gpu.kind, kivi                   ? GpuCacheKind::Kivi
                                : f.format == "latent" ? GpuCacheKind::XLatent
                                                       : GpuCacheKind::XQuant)
                << what;
            for (int l = 0; l < cfg.num_layers; ++l) {
              const double got = static_cast<double>(gpu.page_bytes(l)) / kPageRows;
              const double want = cpu->layer_bytes_per_token(l);
              const int width = f.format == "latent" ? cfg.kv_dim() - f.lead : 0;
              const int pages = group / kPageRows;
              if (width > 0 && pages > 1 && width % pages != 0) {
                EXPECT_GE(got, want) << what << " layer " << l;
                EXPECT_LT(got - want, 6.0 / kPageRows) << what << " layer " << l;
              } else {
                EXPECT_DOUBLE_EQ(got, want) << what << " layer " << l;
              }
            }
            EXPECT_DOUBLE_EQ(gpu.window_bytes_max, cpu->window_bytes_max()) << what;
            bool blocks = false;
            for (const auto& c : gpu.channel) blocks = blocks || !c.empty();
            EXPECT_EQ(gpu.has_channel_blocks(), blocks) << what;
            EXPECT_FALSE(gpu.single_segment() && gpu.has_channel_blocks()) << what;
            expect_consistent(gpu, cfg, what);
          }
        }
      }
    }
  }
}

TEST(GpuCacheLayout, KiviPagesHoldValueRowsThenKeyBlocks) {
  const ModelConfig cfg = make_config("gqa");  // kv_dim 32
  const GpuCacheLayout g = gpu_cache_layout(cfg, per_channel("kivi", 2, 32, {1, 4}, true));
  // Layer 1 at 2 bits: a value row is 2 words + 1 fp16 pair = 12 bytes; a key block of 32
  // tokens spans 2 pages, each with the parameters of 16 channels (64 bytes) and its 16 tokens'
  // codes (16 x 32 x 2 bits = 32 words): 192 + 64 + 128 bytes a page, 24 a token.
  EXPECT_EQ(g.page_bytes(1), 384u);
  EXPECT_EQ(g.channel[1][0].offset, 192u);
  EXPECT_EQ(g.channel[1][0].layout.params_per_page(), 16);
  EXPECT_EQ(g.segments[1][0].col, 32);
  // The windows: per layer 32 fp16 key rows, then the ring of 32 values.
  EXPECT_EQ(g.window_slot_bytes, 3u * 2 * 32 * 32 * 2);
  EXPECT_EQ(g.value_window[1], 32u * 32 * 2 * 3);
  // Blocks of 4 tokens: 4 in a page, each with its own 32 scale/zero pairs and its word-aligned
  // codes (4 x 32 x 3 bits = 12 words).
  const ChannelBlockLayout small =
      gpu_cache_layout(cfg, per_channel("kivi", 3, 4, {}, false)).channel[0][0].layout;
  EXPECT_EQ(small.blocks_per_page(), 4);
  EXPECT_EQ(small.unit_words(), 12u);
  EXPECT_EQ(small.page_bytes(), 4u * 4 * 32 + 4 * 48);
}

TEST(GpuCacheLayout, SixteenBitChannelLayersAreFp16Rows) {
  const ModelConfig cfg = make_config("gqa");
  const GpuCacheLayout ch = gpu_cache_layout(cfg, per_channel("xquant-ch", 3, 32, {1, 16}, true));
  EXPECT_TRUE(ch.channel[0].empty());
  ASSERT_EQ(ch.segments[0].size(), 1u);
  EXPECT_EQ(ch.segments[0][0].layout.bits, 16);
  ASSERT_EQ(ch.channel[1].size(), 1u);
  EXPECT_TRUE(ch.segments[1].empty());
  // Every layer at 16 bits: no blocks, no window slots (as the CPU has no window then).
  EXPECT_FALSE(gpu_cache_layout(cfg, per_channel("latent", 16, 32, {}, true)).has_channel_blocks());
}

void expect_refused(const ModelConfig& cfg, const CacheOptions& o, const std::string& words) {
  try {
    gpu_cache_layout(cfg, o);
    ADD_FAILURE() << describe(o) << " was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
  }
}

TEST(GpuCacheLayout, RefusesWhatTheGpuDoesNotRunByName) {
  const ModelConfig gqa = make_config("gqa"), mha = make_config("mha");
  expect_refused(mha, xquant(2, 16, {}, false, 1), "fp16 K latent channels");
  expect_refused(gqa, xquant(2, 16, {}, true, 32), "fp16 K latent channels");
  expect_refused(gqa, xquant(2, 16, {3, 4}, true), "high-precision layers");
  expect_refused(gqa, xquant(5, 16, {}, true), "bits");
  expect_refused(gqa, xquant(2, 16, {1, 5}, true), "high-precision bits");
  expect_refused(gqa, per_channel("kivi", 16, 32, {}, true), "kivi cache: bits");
  expect_refused(gqa, per_channel("kivi", 4, 32, {1, 16}, true), "kivi cache: bits");
  // Per-channel blocks need G to tile pages; per-token rows take any G.
  for (const char* f : {"kivi", "xquant-ch", "latent"})
    expect_refused(gqa, per_channel(f, 4, 24, {}, true), "--cache-group-size 24");
  EXPECT_NO_THROW(gpu_cache_layout(gqa, xquant(4, 24, {}, true)));
  // What the GPU still refuses of the -ch forms: groups its per-channel blocks cannot tile
  // pages with (with the fp16 window or without).
  for (const char* f : {"xquant-cl-ch", "xquant-cl-ch-normed"}) {
    for (bool window : {true, false}) {
      CacheOptions other = xquant(2, 16, {}, false);
      other.format = f;
      other.fp16_window = window;
      EXPECT_NO_THROW(gpu_cache_layout(mha, other)) << f;
      other.group_size = 24;
      expect_refused(mha, other, "--cache-group-size 24");
    }
  }
}

CacheOptions xquant_cl(const std::string& format, int bits, int group, HighPrecisionLayers hp,
                       const std::string& latent, int base_bits, bool base_latent) {
  CacheOptions o;
  o.format = format;
  o.bits = bits;
  o.group_size = group;
  o.high_precision = hp;
  o.latent = latent;
  o.cl_base_bits = base_bits;
  o.cl_base_latent = base_latent;
  return o;
}

// Every CL option against the CPU format: the same name, the same bytes per token in every
// layer and window bytes, or a ConfigError from both (the -ch forms: also the GPU's own refusal
// of a group size its blocks cannot tile pages with).
TEST(GpuCacheLayout, ClLayerBytesAndNamesEqualTheCpuFormats) {
  int compared = 0, compared_ch = 0;
  for (const char* kind : {"mha", "gqa", "sliding"}) {
    const ModelConfig cfg = make_config(kind);
    const TestProjector proj(cfg, std::string(kind) == "sliding");
    for (const std::string format :
         {"xquant-cl", "xquant-cl-residual", "xquant-cl-normed", "xquant-cl-ch",
          "xquant-cl-ch-residual", "xquant-cl-ch-normed"}) {
      const bool ch = format.rfind("xquant-cl-ch", 0) == 0;
      for (const char* latent : {"off", "auto", "on"}) {
        for (int bits : {2, 3, 4, 8, 16}) {
          for (HighPrecisionLayers hp :
               {HighPrecisionLayers{0, 4}, HighPrecisionLayers{1, 4}, HighPrecisionLayers{2, 8}}) {
            for (int group : ch ? std::vector<int>{8, 24, 32} : std::vector<int>{16, 24}) {
              for (int base_bits : {0, 2, 8}) {
                // Base on its basis or not; the -ch forms also without their fp16 window.
                for (int variant = 0; variant < (ch ? 4 : 2); ++variant) {
                  const bool base_latent = variant % 2 == 1;
                  CacheOptions o =
                      xquant_cl(format, bits, group, hp, latent, base_bits, base_latent);
                  o.fp16_window = variant < 2;
                  const std::string what = std::string(kind) + " " + format + " " + describe(o) +
                                           " base " + std::to_string(base_bits) +
                                           (base_latent ? " latent" : "") +
                                           (o.fp16_window ? "" : " window 0");
                  std::unique_ptr<CacheFormat> cpu;
                  try {
                    cpu = make_cache_format(o, cfg, proj);
                  } catch (const ConfigError&) {
                    EXPECT_THROW(gpu_cache_layout(cfg, o), ConfigError) << what;
                    continue;
                  }
                  // Only layers below 16 bits have blocks to tile pages with.
                  const bool all16 = bits == 16 && hp.layers == 0 && base_bits == 0;
                  if (ch && group == 24 && !all16) {
                    expect_refused(cfg, o, "--cache-group-size 24");
                    continue;
                  }
                  const GpuCacheLayout gpu = gpu_cache_layout(cfg, o);
                  EXPECT_EQ(gpu.fp16_window, o.fp16_window) << what;
                  ++compared;
                  compared_ch += ch;
                  EXPECT_EQ(gpu.kind, GpuCacheKind::XQuantCL) << what;
                  EXPECT_EQ(gpu.name, cpu->name()) << what;
                  EXPECT_EQ(gpu.row_width, cfg.hidden_size) << what;
                  EXPECT_EQ(gpu.cl.per_channel, ch) << what;
                  ASSERT_EQ(gpu.layers(), cfg.num_layers) << what;
                  for (int l = 0; l < cfg.num_layers; ++l) {
                    EXPECT_DOUBLE_EQ(static_cast<double>(gpu.page_bytes(l)) / kPageRows,
                                     cpu->layer_bytes_per_token(l))
                        << what << " layer " << l;
                    // One store per layer: per-channel blocks below 16 bits in the -ch forms,
                    // else per-token rows.
                    const size_t blocks = gpu.channel[l].size();
                    EXPECT_EQ(blocks, ch && gpu.cl.bits[l] != 16 ? 1u : 0u) << what;
                    ASSERT_EQ(gpu.segments[l].size() + blocks, 1u) << what;
                    EXPECT_EQ(blocks ? gpu.channel[l][0].layout.page_bytes()
                                     : gpu.segments[l][0].layout.bytes() * kPageRows,
                              gpu.page_bytes(l));
                    EXPECT_EQ(gpu.layer_offset[l + 1] - gpu.layer_offset[l], gpu.page_bytes(l));
                    EXPECT_EQ(gpu.page_bytes(l) % 4, 0u) << what;
                  }
                  EXPECT_DOUBLE_EQ(gpu.window_bytes_max, cpu->window_bytes_max()) << what;
                  // The -ch forms' windows: every layer's G rows of S, X-wide, apart.
                  EXPECT_EQ(gpu.has_channel_blocks(), ch) << what;
                  if (ch) {
                    const size_t row =
                        static_cast<size_t>(cfg.hidden_size) * (gpu.cl.residual ? 4 : 2);
                    EXPECT_EQ(gpu.cl.window_value_bytes * cfg.hidden_size, row) << what;
                    ASSERT_EQ(gpu.cl.window_offset.size(), static_cast<size_t>(cfg.num_layers));
                    for (int l = 0; l < cfg.num_layers; ++l) {
                      const size_t end = l + 1 < cfg.num_layers ? gpu.cl.window_offset[l + 1]
                                                                : gpu.window_slot_bytes;
                      EXPECT_GE(end - gpu.cl.window_offset[l], group * row) << what;
                      EXPECT_EQ(gpu.cl.window_offset[l] % 16, 0u) << what;
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  EXPECT_GT(compared, 500);  // most combinations run, not only refusals
  EXPECT_GT(compared_ch, 300);
}

TEST(GpuCacheLayout, ClChainsBasesAndWidthsFollowThePaper) {
  const ModelConfig gqa = make_config("gqa"), sliding = make_config("sliding");
  // Latent, first 2 layers at 8 bits: layer 0 on its own (on its basis), layer 1 the X-wide
  // 8-bit base the accumulator starts from, layer 2 the 2-bit latent delta against it.
  GpuCacheLayout g = gpu_cache_layout(gqa, xquant_cl("xquant-cl", 2, 16, {2, 8}, "on", 0, false));
  EXPECT_EQ(g.cl.prev, (std::vector<int>{-1, -1, 1}));
  EXPECT_EQ(g.cl.on_basis, (std::vector<char>{1, 0, 1}));
  EXPECT_EQ(g.cl.chain, (std::vector<int>{0, 0, 0}));
  EXPECT_TRUE(g.cl.latent);
  EXPECT_FALSE(g.cl.residual);
  EXPECT_EQ(g.segments[1][0].layout.width, 128);
  EXPECT_EQ(g.segments[1][0].layout.bits, 8);
  EXPECT_EQ(g.segments[2][0].layout.width, 64);  // 2 kv_dim
  EXPECT_EQ(g.segments[2][0].layout.bits, 2);
  EXPECT_EQ(g.name, "xquant-cl-latent:2");
  // A latent base: every layer on its basis.
  g = gpu_cache_layout(gqa, xquant_cl("xquant-cl", 3, 16, {}, "on", 0, true));
  EXPECT_EQ(g.cl.on_basis, (std::vector<char>{1, 1, 1}));
  EXPECT_EQ(g.segments[0][0].layout.bits, 4);  // the default base: max(bits, 4)
  EXPECT_EQ(g.name, "xquant-cl-latent-lb:3");
  // The residual stream, X-wide; sliding layers chain among themselves.
  g = gpu_cache_layout(sliding, xquant_cl("xquant-cl-residual", 2, 16, {}, "auto", 0, false));
  EXPECT_EQ(g.cl.prev, (std::vector<int>{-1, -1, 0}));
  EXPECT_EQ(g.cl.chain, (std::vector<int>{1, 0, 1}));
  EXPECT_EQ(g.cl.chains, 2);
  EXPECT_TRUE(g.cl.residual);
  EXPECT_FALSE(g.cl.latent);
  EXPECT_EQ(g.name, "xquant-cl-residual:2");
}

TEST(GpuCacheLayout, ClPerChannelFormsKeepTheCpusStreamAndWindows) {
  const ModelConfig gqa = make_config("gqa");
  // xquant-cl-ch: the residual stream (fp32 window rows), X-wide even where the latent is
  // "auto"; -normed takes the latent there; "on" gives it to xquant-cl-ch too, which then
  // takes X (fp16 window rows).
  GpuCacheLayout g = gpu_cache_layout(gqa, xquant_cl("xquant-cl-ch", 2, 32, {}, "auto", 0, false));
  EXPECT_TRUE(g.cl.residual);
  EXPECT_FALSE(g.cl.latent);
  EXPECT_EQ(g.cl.window_value_bytes, 4);
  EXPECT_EQ(g.name, "xquant-cl-ch:2");
  EXPECT_EQ(g.channel[1][0].layout.width, 128);
  EXPECT_EQ(g.channel[1][0].layout.group, 32);
  g = gpu_cache_layout(gqa, xquant_cl("xquant-cl-ch-normed", 2, 32, {}, "auto", 0, false));
  EXPECT_FALSE(g.cl.residual);
  EXPECT_TRUE(g.cl.latent);
  EXPECT_EQ(g.cl.window_value_bytes, 2);
  EXPECT_EQ(g.name, "xquant-cl-ch-latent:2");
  EXPECT_EQ(g.cl.on_basis, (std::vector<char>{0, 1, 1}));
  EXPECT_EQ(g.channel[0][0].layout.width, 128);  // the X-wide base
  EXPECT_EQ(g.channel[1][0].layout.width, 64);   // 2 kv_dim
  g = gpu_cache_layout(gqa, xquant_cl("xquant-cl-ch", 2, 32, {}, "on", 0, false));
  EXPECT_FALSE(g.cl.residual);
  EXPECT_TRUE(g.cl.latent);
  // 16 bits: fp16 rows per token, still waiting in the window until their block fills.
  g = gpu_cache_layout(gqa, xquant_cl("xquant-cl-ch", 16, 32, {}, "off", 0, false));
  for (int l = 0; l < 3; ++l) {
    EXPECT_TRUE(g.channel[l].empty());
    EXPECT_EQ(g.segments[l][0].layout.bits, 16);
  }
  EXPECT_TRUE(g.has_channel_blocks());
  EXPECT_EQ(g.window_slot_bytes, 3u * 32 * 128 * 4);
  // Without the fp16 window: the same windows (they hold the unfilled block's S, which is read
  // quantized), the flag carried for the reads.
  CacheOptions quantized_window = xquant_cl("xquant-cl-ch", 2, 32, {}, "auto", 0, false);
  quantized_window.fp16_window = false;
  const GpuCacheLayout q = gpu_cache_layout(gqa, quantized_window);
  EXPECT_FALSE(q.fp16_window);
  g = gpu_cache_layout(gqa, xquant_cl("xquant-cl-ch", 2, 32, {}, "auto", 0, false));
  EXPECT_TRUE(g.fp16_window);
  EXPECT_EQ(q.window_slot_bytes, g.window_slot_bytes);
  EXPECT_EQ(q.cl.window_offset, g.cl.window_offset);
  EXPECT_EQ(q.window_bytes_max, g.window_bytes_max);
  expect_refused(gqa, xquant_cl("xquant-cl-residual", 2, 16, {}, "on", 0, false),
                 "residual stream");
  expect_refused(gqa, xquant_cl("xquant-cl", 5, 16, {}, "on", 0, false), "bits");
  expect_refused(gqa, xquant_cl("xquant-cl", 2, 16, {}, "on", 5, false), "base bits");
}

TEST(GpuCacheLayout, ClGroupsKeepTheirAccumulatorRowsWhileTheyFit) {
  // All fit: each group its own rows, in order.
  std::vector<ClGroupRows> p = place_cl_groups({32, 16, 48}, 96);
  ASSERT_EQ(p.size(), 3u);
  EXPECT_TRUE(p[0].resident && p[1].resident && p[2].resident);
  EXPECT_EQ(p[0].offset, 0);
  EXPECT_EQ(p[1].offset, 32);
  EXPECT_EQ(p[2].offset, 48);
  // Not all fit: the last `largest` rows are shared scratch for the groups that do not.
  p = place_cl_groups({32, 16, 48, 16}, 96);
  EXPECT_TRUE(p[0].resident && p[1].resident);  // 32 + 16 fit in 96 - 48
  EXPECT_EQ(p[1].offset, 32);
  EXPECT_FALSE(p[2].resident || p[3].resident);
  EXPECT_EQ(p[2].offset, 48);
  EXPECT_EQ(p[3].offset, 48);
  // A later small group takes resident rows a larger one before it could not.
  p = place_cl_groups({16, 48, 16, 32}, 96);  // 48 rows before the scratch
  EXPECT_TRUE(p[0].resident);
  EXPECT_FALSE(p[1].resident);
  EXPECT_EQ(p[1].offset, 48);
  EXPECT_TRUE(p[2].resident);
  EXPECT_EQ(p[2].offset, 16);
  EXPECT_FALSE(p[3].resident);  // 32 + 32 > 48
  // Room for the largest group only: every group rebuilds in the same rows.
  p = place_cl_groups({48, 48}, 48);
  for (const ClGroupRows& r : p) {
    EXPECT_FALSE(r.resident);
    EXPECT_EQ(r.offset, 0);
  }
  // No group's rows overlap a resident group's, and every group ends within the capacity.
  const std::vector<int> rows = {16, 64, 32, 16, 80, 16};
  p = place_cl_groups(rows, 160);
  for (size_t a = 0; a < rows.size(); ++a) {
    EXPECT_LE(p[a].offset + rows[a], 160);
    for (size_t b = 0; b < rows.size(); ++b) {
      if (a == b || !p[a].resident) continue;
      const bool apart =
          p[a].offset + rows[a] <= p[b].offset || p[b].offset + rows[b] <= p[a].offset;
      EXPECT_TRUE(apart) << a << " " << b;
    }
  }
}

}  // namespace
}  // namespace xq::cuda
