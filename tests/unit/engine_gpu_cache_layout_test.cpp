// The GPU cache's layout (engine/cuda/gpu_cache_layout.h), which needs no GPU: each layer's bytes
// per token equal the CPU format's for the same options (high-precision first layers, the GQA
// latent, its fp16 K channels, groups that do or do not divide the latent), the layers' parts of
// a page follow each other, a layer's row segments tile its part, and what the GPU does not run
// is refused by name. XQuant-CL's per-token forms likewise (X-wide, residual stream, the GQA
// latent with an X-wide or latent base, base bits, high-precision layers, sliding-window chains),
// and where a step's workspace groups keep their accumulator rows.
#include <gtest/gtest.h>

#include <memory>
#include <string>
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

// Offsets are prefix sums, segments tile each layer's part in column order, and every offset
// keeps the 4-byte alignment the kernels' packed words need.
void expect_consistent(const GpuCacheLayout& g, const ModelConfig& cfg, const std::string& what) {
  ASSERT_EQ(g.layers(), cfg.num_layers) << what;
  EXPECT_EQ(g.layer_offset[0], 0u) << what;
  size_t sum = 0;
  for (int l = 0; l < g.layers(); ++l) {
    EXPECT_EQ(g.layer_offset[l], sum) << what;
    EXPECT_EQ(g.layer_begin(l, 7), 7 * sum) << what;
    size_t at = 0;
    int col = 0;
    for (const RowSegment& s : g.segments[l]) {
      EXPECT_EQ(s.offset, at) << what << " layer " << l;
      EXPECT_EQ(s.col, col) << what << " layer " << l;
      EXPECT_EQ(s.offset % 4, 0u) << what;
      at += s.layout.bytes() * kPageRows;
      col += s.layout.width;
    }
    EXPECT_EQ(at, g.page_bytes(l)) << what << " layer " << l;
    EXPECT_EQ(col, g.row_width) << what << " layer " << l;
    EXPECT_EQ(g.page_bytes(l) % 4, 0u) << what;
    sum += g.page_bytes(l);
  }
  EXPECT_EQ(g.page_bytes_all_layers(), sum) << what;
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
  CacheOptions o = xquant(2, 16, {}, true);
  o.latent_k = "channel";
  expect_refused(gqa, o, "--xquant-latent-k channel");
  o.latent = "off";  // no latent: the K latent's grouping does not apply (as on the CPU)
  EXPECT_NO_THROW(gpu_cache_layout(gqa, o));
  expect_refused(mha, xquant(2, 16, {}, false, 1), "fp16 K latent channels");
  expect_refused(gqa, xquant(2, 16, {}, true, 32), "fp16 K latent channels");
  expect_refused(gqa, xquant(2, 16, {3, 4}, true), "high-precision layers");
  expect_refused(gqa, xquant(5, 16, {}, true), "bits");
  expect_refused(gqa, xquant(2, 16, {1, 5}, true), "high-precision bits");
  for (const char* f : {"kivi", "xquant-ch", "xquant-cl-ch", "xquant-cl-ch-normed"}) {
    CacheOptions other = xquant(2, 16, {}, false);
    other.format = f;
    expect_refused(mha, other, "not on the GPU engine yet");
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

// Every per-token CL option against the CPU format: the same name, the same bytes per token in
// every layer, or a ConfigError from both.
TEST(GpuCacheLayout, ClLayerBytesAndNamesEqualTheCpuFormats) {
  int compared = 0;
  for (const char* kind : {"mha", "gqa", "sliding"}) {
    const ModelConfig cfg = make_config(kind);
    const TestProjector proj(cfg, std::string(kind) == "sliding");
    for (const char* format : {"xquant-cl", "xquant-cl-residual", "xquant-cl-normed"}) {
      for (const char* latent : {"off", "auto", "on"}) {
        for (int bits : {2, 3, 4, 8, 16}) {
          for (HighPrecisionLayers hp :
               {HighPrecisionLayers{0, 4}, HighPrecisionLayers{1, 4}, HighPrecisionLayers{2, 8}}) {
            for (int group : {16, 24}) {
              for (int base_bits : {0, 2, 8}) {
                for (bool base_latent : {false, true}) {
                  const CacheOptions o =
                      xquant_cl(format, bits, group, hp, latent, base_bits, base_latent);
                  const std::string what = std::string(kind) + " " + format + " " + describe(o) +
                                           " base " + std::to_string(base_bits) +
                                           (base_latent ? " latent" : "");
                  std::unique_ptr<CacheFormat> cpu;
                  try {
                    cpu = make_cache_format(o, cfg, proj);
                  } catch (const ConfigError&) {
                    EXPECT_THROW(gpu_cache_layout(cfg, o), ConfigError) << what;
                    continue;
                  }
                  const GpuCacheLayout gpu = gpu_cache_layout(cfg, o);
                  ++compared;
                  EXPECT_EQ(gpu.kind, GpuCacheKind::XQuantCL) << what;
                  EXPECT_EQ(gpu.name, cpu->name()) << what;
                  EXPECT_EQ(gpu.row_width, cfg.hidden_size) << what;
                  ASSERT_EQ(gpu.layers(), cfg.num_layers) << what;
                  for (int l = 0; l < cfg.num_layers; ++l) {
                    EXPECT_DOUBLE_EQ(static_cast<double>(gpu.page_bytes(l)) / kPageRows,
                                     cpu->layer_bytes_per_token(l))
                        << what << " layer " << l;
                    ASSERT_EQ(gpu.segments[l].size(), 1u) << what;
                    EXPECT_EQ(gpu.segments[l][0].layout.bytes() * kPageRows, gpu.page_bytes(l));
                    EXPECT_EQ(gpu.layer_offset[l + 1] - gpu.layer_offset[l], gpu.page_bytes(l));
                    EXPECT_EQ(gpu.page_bytes(l) % 4, 0u) << what;
                  }
                  EXPECT_EQ(cpu->window_bytes_max(), 0.0) << what;
                }
              }
            }
          }
        }
      }
    }
  }
  EXPECT_GT(compared, 500);  // most combinations run, not only refusals
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

TEST(GpuCacheLayout, ClRefusesPerChannelFormsNamingThePerTokenOnes) {
  const ModelConfig gqa = make_config("gqa");
  for (const char* f : {"xquant-cl-ch", "xquant-cl-ch-normed", "xquant-cl-ch-residual"}) {
    CacheOptions o = xquant_cl(f, 2, 16, {}, "auto", 0, false);
    expect_refused(gqa, o, "xquant-cl-residual");
    expect_refused(gqa, o, "--device cpu");
  }
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
