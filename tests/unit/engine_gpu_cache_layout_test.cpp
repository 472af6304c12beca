// The GPU cache's layout (engine/cuda/gpu_cache_layout.h), which needs no GPU: each layer's bytes
// per token equal the CPU format's for the same options (high-precision first layers, the GQA
// latent, its fp16 K channels, groups that do or do not divide the latent), the layers' parts of
// a page follow each other, a layer's row segments tile its part, and what the GPU does not run
// is refused by name.
#include <gtest/gtest.h>

#include <string>

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
  for (const char* f : {"kivi", "xquant-ch", "xquant-cl", "xquant-cl-ch"}) {
    CacheOptions other = xquant(2, 16, {}, false);
    other.format = f;
    expect_refused(mha, other, "not on the GPU engine yet");
  }
}

}  // namespace
}  // namespace xq::cuda
