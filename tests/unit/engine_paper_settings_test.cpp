// The paper's settings as cache options: the first layers at higher bits, the K latent's channel 0
// in fp16 (Appendix B), and no fp16 window of recent tokens (fair teacher-forced perplexity).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/cache/cache_format.h"
#include "engine/cache/fp16_lead_rows.h"
#include "engine/cache/kivi_cache.h"
#include "engine/cache/quantized_rows.h"
#include "engine/cache/quantizer.h"
#include "engine/cache/xquant_cache.h"
#include "engine/cache/xquant_cl_cache.h"
#include "engine/model/model.h"
#include "tests/unit/engine_cache_bench.h"

namespace xq {
namespace {

using namespace cache_test;

std::vector<float> random_rows(int rows, int width, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(rows) * width);
  for (float& v : x) v = nd(rng);
  return x;
}

// Without the fp16 tail an unfilled block reads quantized (within half a step of its own
// per-channel range), and full blocks read as before.
TEST(PaperSettings, ChannelRowsWithoutFp16TailReadTheTailQuantized) {
  const int w = 8, g = 16, n = 16 + 5;
  const auto x = random_rows(n, w, 1);
  ChannelQuantRows on(w, 2, g), off(w, 2, g, false);
  on.append(x.data(), n);
  off.append(x.data(), n);
  std::vector<float> a(x.size()), b(x.size());
  on.read(0, n, a.data());
  off.read(0, n, b.data());
  for (int i = 0; i < g * w; ++i) EXPECT_EQ(a[i], b[i]);
  double moved = 0;
  for (int c = 0; c < w; ++c) {
    float lo = 1e9f, hi = -1e9f;
    for (int r = g; r < n; ++r) lo = std::min(lo, x[r * w + c]), hi = std::max(hi, x[r * w + c]);
    const float step = (hi - lo) / 3;
    for (int r = g; r < n; ++r) {
      EXPECT_NEAR(a[r * w + c], x[r * w + c], 1e-3f * std::fabs(x[r * w + c]) + 1e-3f);
      EXPECT_LE(std::fabs(b[r * w + c] - x[r * w + c]), 0.51f * step + 1e-3f);
      moved += std::fabs(b[r * w + c] - a[r * w + c]);
    }
  }
  EXPECT_GT(moved, 0.1);
  EXPECT_EQ(on.bytes(), off.bytes());  // the tail is still held in fp16, to requantize whole
}

TEST(PaperSettings, KiviWithoutWindowQuantizesEveryPastToken) {
  Bench s("gqa");
  const KiviFormat with(s.cfg, 2, kGroup), without(s.cfg, 2, kGroup, {}, false);
  EXPECT_EQ(with.bytes_per_token(), without.bytes_per_token());
  // Only the unfilled key block stays (read quantized); the value window is gone.
  EXPECT_LT(without.window_bytes_max(), with.window_bytes_max());
  const double e_with = rel_error(s.cfg, s.decode(with), s.ref, 0);
  const double e_without = rel_error(s.cfg, s.decode(without), s.ref, 0);
  EXPECT_GT(e_without, 1.2 * e_with);
}

TEST(PaperSettings, HighPrecisionLayersCostTheirBits) {
  Bench s("gqa", 40);
  auto row = [&](int width, int bits) { return width * bits / 8.0 + 4.0 * width / kGroup; };
  auto block_row = row;  // a per-channel block of G rows costs the same per token at G | width
  const int kv = 32, h = 128;
  const HighPrecisionLayers hp{2, 4};
  const KiviFormat kivi(s.cfg, 2, kGroup, hp);
  EXPECT_DOUBLE_EQ(kivi.bytes_per_token(),
                   2 * (block_row(kv, 4) + row(kv, 4)) + block_row(kv, 2) + row(kv, 2));
  XQuantOptions o;
  o.bits = 2, o.group = kGroup, o.hp = hp;
  const XQuantFormat x(s.cfg, s.proj, o);
  EXPECT_DOUBLE_EQ(x.bytes_per_token(), 2 * row(h, 4) + row(h, 2));
  o.latent = true, o.latent_k_per_token = true;
  const XQuantFormat lat(s.cfg, s.proj, o);
  EXPECT_DOUBLE_EQ(lat.bytes_per_token(), 2 * 2 * row(kv, 4) + 2 * row(kv, 2));
  for (const CacheFormat* f : std::vector<const CacheFormat*>{&kivi, &x, &lat}) {
    auto seq = f->new_sequence();
    Outputs out;
    run(s.cfg, s.work, *seq, 0, 32, 4, out);  // whole key groups: no window left
    // KIVI's value window holds the newest G values per layer in fp16.
    const double window =
        f == &kivi ? kGroup * (3 * 2.0 * kv - (2 * row(kv, 4) + row(kv, 2))) : 0.0;
    EXPECT_DOUBLE_EQ(static_cast<double>(seq->bytes_used()), 32 * f->bytes_per_token() + window)
        << f->name();
  }
  // Fewer bits in the first layers than in the rest, or more: either way the error moves.
  const double plain = rel_error(s.cfg, s.decode(KiviFormat(s.cfg, 2, kGroup)), s.ref, 0);
  EXPECT_LT(rel_error(s.cfg, s.decode(kivi), s.ref, 0), plain);
}

// xquant-cl-ch without its window reads the window rows' deltas quantized down the chain: exact at
// 16 bits, and at 2 bits further from exact attention than with the fp16 window, for the X-wide
// residual form and the latent form alike.
TEST(PaperSettings, ClChannelWithoutWindowReadsItsWindowQuantized) {
  for (const char* kind : {"mha", "gqa", "sliding"}) {
    Bench s(kind);
    const Outputs kv16 = s.decode(*make("fp16", s.cfg, s.proj, 16));
    for (bool latent : {false, true}) {
      if (latent && std::string(kind) == "mha") continue;
      XQuantCLOptions o;
      o.group = kGroup, o.per_channel = true, o.latent = latent, o.residual = !latent;
      o.fp16_window = false;
      o.bits = 16;
      EXPECT_LT(rel_error(s.cfg, s.decode(XQuantCLFormat(s.cfg, s.proj, o), 5), kv16, 0), 2e-3)
          << kind << " latent " << latent;
      o.bits = 2;
      const double without = rel_error(s.cfg, s.decode(XQuantCLFormat(s.cfg, s.proj, o)), s.ref, 0);
      o.fp16_window = true;
      const double with = rel_error(s.cfg, s.decode(XQuantCLFormat(s.cfg, s.proj, o)), s.ref, 0);
      EXPECT_GT(without, with) << kind << " latent " << latent;
      EXPECT_LT(without, 0.6) << kind << " latent " << latent;
    }
  }
}

// The fp16 lead channels come back as fp16, whatever their range; the rest are quantized.
TEST(PaperSettings, Fp16LeadChannelsKeepTheOutlierChannel) {
  const int w = 16, n = 20;
  auto x = random_rows(n, w, 2);
  for (int r = 0; r < n; ++r) x[r * w] = 500.0f + 37.0f * r;
  Fp16LeadRows<TokenQuantRows> lead(w, 2, 8, 1);
  Fp16LeadRows<ChannelQuantRows> lead_ch(w, 2, 8, 1);
  TokenQuantRows plain(w, 2, 8);
  ChannelQuantRows plain_ch(w, 2, 8);
  lead.append(x.data(), n);
  lead_ch.append(x.data(), n);
  plain.append(x.data(), n);
  plain_ch.append(x.data(), n);
  std::vector<float> a(x.size()), b(x.size()), c(x.size()), d(x.size());
  lead.read(0, n, a.data());
  lead_ch.read(0, n, b.data());
  plain.read(0, n, c.data());
  plain_ch.read(0, n, d.data());
  // Per channel, the other channels' groups do not see channel 0: the same values as without it.
  for (int r = 0; r < n; ++r)
    for (int k = 1; k < w; ++k) EXPECT_EQ(b[r * w + k], d[r * w + k]) << r << " " << k;
  double err_lead = 0, err_plain = 0;
  for (int r = 0; r < n; ++r) {
    EXPECT_NEAR(a[r * w], x[r * w], 0.5f);  // fp16 of ~1000: steps of 0.5
    EXPECT_NEAR(b[r * w], x[r * w], 0.5f);
    for (int k = 1; k < w; ++k) {
      err_lead += std::fabs(a[r * w + k] - x[r * w + k]);
      err_plain += std::fabs(c[r * w + k] - x[r * w + k]);
    }
  }
  EXPECT_LT(err_lead, 0.5 * err_plain);  // the outlier no longer sets the first group's step
  EXPECT_EQ(lead.bytes(), n * (2 + quantized_bytes(w - 1, 2, 8)));
}

TEST(PaperSettings, LatentKFp16ChannelsNameAndBytes) {
  Bench s("gqa", 40);
  CacheOptions o;
  o.format = "xquant", o.bits = 2, o.group_size = kGroup, o.latent_k = "channel";
  o.latent_k_fp16_channels = 1;
  const auto f = make_cache_format(o, s.cfg, s.proj);
  EXPECT_EQ(f->name(), "xquant-latent-k16x1:2");
  const int kv = 32;
  const double k = 2.0 + (kv - 1) * 2 / 8.0 + 4.0 * (kv - 1) / kGroup;
  const double v = kv * 2 / 8.0 + 4.0 * 2;
  EXPECT_NEAR(f->bytes_per_token(), 3 * (k + v), 1e-9);
  auto seq = f->new_sequence();
  Outputs out;
  run(s.cfg, s.work, *seq, 0, 32, 4, out);
  EXPECT_NEAR(static_cast<double>(seq->bytes_used()), 32 * f->bytes_per_token(), 1e-9);
  o.latent = "off";
  EXPECT_THROW(make_cache_format(o, s.cfg, s.proj), ConfigError);
  o.latent = "auto", o.format = "kivi";
  EXPECT_THROW(make_cache_format(o, s.cfg, s.proj), ConfigError);
}

// The GPU runs XQuant-CL's base settings (engine_gpu_cache_layout_test.cpp): nothing refuses
// them before the model is read.
TEST(PaperSettings, GpuEngineTakesTheClBaseSettings) {
  EngineOptions e;
  e.device = "cuda";
  e.cache.format = "xquant-cl", e.cache.bits = 2;
  e.cache.cl_base_bits = 4;
  e.cache.cl_base_latent = true;
  try {
    load_model("/nonexistent/model.gguf", e);
    ADD_FAILURE() << "a model that does not exist was loaded";
  } catch (const std::exception& err) {
    const std::string what = err.what();
    EXPECT_EQ(what.find("not on the GPU engine"), std::string::npos) << what;
    EXPECT_NE(what.find("/nonexistent/model.gguf"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace xq
