// XQuant-CL on GQA models as the paper builds it: deltas cached on each layer's basis of [Wk; Wv]
// (2 kv_dim wide), the accumulator in X space; and the paper's settings around it (first layers
// at higher bits, the CL base width).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "engine/cache/cache_format.h"
#include "engine/cache/quantizer.h"
#include "engine/cache/xquant_cl_cache.h"
#include "engine/model/cpu_model.h"
#include "tests/unit/engine_cache_bench.h"
#include "tests/unit/engine_random_model.h"

namespace xq {
namespace {

using namespace cache_test;

float max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

std::unique_ptr<CacheFormat> cl(const Bench& s, int bits, bool per_channel = false,
                                HighPrecisionLayers hp = {}, bool latent = true,
                                bool base_latent = false) {
  XQuantCLOptions o;
  o.bits = bits, o.group = kGroup, o.per_channel = per_channel, o.latent = latent, o.hp = hp;
  o.base_latent = base_latent;
  o.residual = !latent && cl_default_residual(per_channel);
  return std::make_unique<XQuantCLFormat>(s.cfg, s.proj, o);
}

TEST(ClLatent, SixteenBitsMatchTheFp16KvCache) {
  for (const char* kind : {"gqa", "sliding"}) {
    Bench s(kind);
    const Outputs kv16 = s.decode(*make("fp16", s.cfg, s.proj, 16));
    for (bool per_channel : {false, true}) {
      for (int hp : {0, 2}) {
        for (bool base_latent : {false, true}) {
          const auto f = cl(s, 16, per_channel, {hp, 16}, true, base_latent);
          for (int chunk : {1, 9}) {
            const double e = rel_error(s.cfg, s.decode(*f, chunk), kv16, 0);
            EXPECT_LT(e, 2e-3) << kind << " per_channel " << per_channel << " hp " << hp
                               << " base_latent " << base_latent;
          }
        }
      }
    }
  }
}

TEST(ClLatent, ErrorGrowsAsBitsFall) {
  for (const char* kind : {"gqa", "sliding"}) {
    Bench s(kind);
    for (bool per_channel : {false, true}) {
      double prev = 0;
      for (int bits : {8, 4, 3, 2}) {
        const double e = rel_error(s.cfg, s.decode(*cl(s, bits, per_channel)), s.ref, 3 * kGroup);
        EXPECT_GT(e, prev) << kind << " " << bits;
        EXPECT_LT(e, bits == 2 ? 0.6 : bits == 3 ? 0.3 : 0.15) << kind << " " << bits;
        prev = e;
      }
    }
  }
}

// Layers of the "gqa" bench (hidden 128, kv_dim 32, 3 layers, G 16): the latent delta is 64
// wide, the base X-wide; bytes_used() of real sequences equals the per-token count exactly.
TEST(ClLatent, BytesPerTokenAreExact) {
  Bench s("gqa", 40);
  auto row = [&](int width, int bits) { return width * bits / 8.0 + 4.0 * width / kGroup; };
  struct Case {
    int bits;
    HighPrecisionLayers hp;
    double bpt;
  };
  // Without high-precision layers: layer 0 is the 4-bit X-wide base. With the first 2 layers at
  // 8 bits: layer 0 on its own (latent), layer 1 the base (X-wide), layer 2 a delta.
  const std::vector<Case> cases = {{2, {}, row(128, 4) + 2 * row(64, 2)},
                                   {3, {}, row(128, 4) + 2 * row(64, 3)},
                                   {2, {2, 8}, row(64, 8) + row(128, 8) + row(64, 2)},
                                   {16, {}, 2.0 * 128 + 2 * 2.0 * 64}};
  for (const Case& c : cases) {
    const auto f = cl(s, c.bits, false, c.hp);
    EXPECT_DOUBLE_EQ(f->bytes_per_token(), c.bpt) << c.bits;
    EXPECT_EQ(f->window_bytes_max(), 0.0);
    auto seq = f->new_sequence();
    Outputs o;
    run(s.cfg, s.work, *seq, 0, 37, 5, o);
    EXPECT_DOUBLE_EQ(static_cast<double>(seq->bytes_used()), 37 * c.bpt) << c.bits;
  }
  // The base on its basis too: every layer 64 wide.
  EXPECT_DOUBLE_EQ(cl(s, 2, false, {}, true, true)->bytes_per_token(), row(64, 4) + 2 * row(64, 2));
  // Smaller than X-wide deltas, which cost row(128, 2) per delta layer.
  EXPECT_LT(cl(s, 2)->bytes_per_token(), cl(s, 2, false, {}, false)->bytes_per_token());
}

// The paper's group size 128 is wider than these rows (64 latent, 32 KV values): one short
// group per row, and bytes_used() still equals the per-token count, in every format.
TEST(ClLatent, GroupSize128WiderThanTheRows) {
  Bench s("gqa", 40);
  CacheOptions o;
  o.group_size = 128, o.bits = 2, o.fp16_window = false, o.high_precision = {2, 4};
  for (const char* format : {"kivi", "xquant", "xquant-cl", "xquant-cl-ch-normed"}) {
    o.format = format;
    const auto f = make_cache_format(o, s.cfg, s.proj);
    auto seq = f->new_sequence();
    Outputs out;
    run(s.cfg, s.work, *seq, 0, 37, 4, out);
    const double used = static_cast<double>(seq->bytes_used());
    EXPECT_GE(used + 1e-9, 37 * f->bytes_per_token()) << format;
    EXPECT_LE(used, 37 * f->bytes_per_token() + f->window_bytes_max() + 1e-9) << format;
    EXPECT_LT(rel_error(s.cfg, out, s.ref, 0), 0.6) << format;
  }
  o.format = "xquant-cl";
  // Per layer: 4-bit latent (64 values: 32 B + one group's 4 B), the 4-bit X-wide base (128: 64 +
  // 4), a 2-bit latent delta (16 + 4).
  EXPECT_DOUBLE_EQ(make_cache_format(o, s.cfg, s.proj)->bytes_per_token(), 36.0 + 68.0 + 20.0);
}

TEST(ClLatent, HighPrecisionLayersStartTheChainAtTheirLast) {
  ModelConfig c = make_config("gqa");
  c.num_layers = 6;
  EXPECT_EQ(cl_chains(c, 2), (std::vector<int>{-1, -1, -1, 2, 3, 4}));
  c.sliding_window = 8;
  c.layer_is_sliding = {true, true, true, true, true, false};
  EXPECT_EQ(cl_chains(c, 2), (std::vector<int>{-1, -1, -1, 2, 3, -1}));
}

// The factory picks the latent form for the X-delta names on GQA models, keeps X-wide deltas on
// MHA models and for the residual stream (xquant-cl-ch's default, the better stream for
// per-channel groups on Gemma 3), and refuses the latent of the residual stream.
TEST(ClLatent, FactoryChoosesTheLatentOnGqaModels) {
  Bench gqa("gqa", 4), mha("mha", 4);
  CacheOptions o;
  o.group_size = kGroup, o.bits = 2;
  const std::vector<std::pair<std::string, std::string>> gqa_names = {
      {"xquant-cl", "xquant-cl-latent:2"},
      {"xquant-cl-ch", "xquant-cl-ch:2"},
      {"xquant-cl-ch-normed", "xquant-cl-ch-latent:2"},
      {"xquant-cl-residual", "xquant-cl-residual:2"},
      {"xquant-cl-ch-residual", "xquant-cl-ch:2"}};
  for (const auto& [format, name] : gqa_names) {
    o.format = format;
    EXPECT_EQ(make_cache_format(o, gqa.cfg, gqa.proj)->name(), name);
  }
  o.format = "xquant-cl";
  EXPECT_EQ(make_cache_format(o, mha.cfg, mha.proj)->name(), "xquant-cl:2");
  o.latent = "off";
  EXPECT_EQ(make_cache_format(o, gqa.cfg, gqa.proj)->name(), "xquant-cl:2");
  o.latent = "on", o.format = "xquant-cl-ch";
  EXPECT_EQ(make_cache_format(o, gqa.cfg, gqa.proj)->name(), "xquant-cl-ch-latent:2");
  o.format = "xquant-cl-residual";
  EXPECT_THROW(make_cache_format(o, gqa.cfg, gqa.proj), ConfigError);
  o.format = "xquant-cl";
  EXPECT_THROW(make_cache_format(o, mha.cfg, mha.proj), ConfigError);  // 2 kv_dim > hidden
  o.latent = "auto", o.high_precision = {3, 4};  // as many as the model's layers
  EXPECT_THROW(make_cache_format(o, gqa.cfg, gqa.proj), ConfigError);
  o.high_precision = {2, 5};
  EXPECT_THROW(make_cache_format(o, gqa.cfg, gqa.proj), ConfigError);
  o.high_precision = {}, o.format = "kivi", o.cl_base_bits = 4;
  EXPECT_THROW(make_cache_format(o, gqa.cfg, gqa.proj), ConfigError);
}

// The whole model: a random GQA model (kv_dim 8 against hidden 32, 4 layers) gives the fp16 KV
// cache's logits through the latent CL cache at 16 bits, and at 8 bits stays close.
TEST(ClLatent, RandomGqaModelLogitsEqualTheFp16Cache) {
  for (Arch arch : {Arch::Llama, Arch::Gemma3}) {
    ModelConfig c = tiny_config(arch);
    c.num_layers = 4, c.num_kv_heads = 1;
    if (arch == Arch::Gemma3) c.layer_is_sliding = {true, true, false, true};
    const MemoryWeights w = random_weights(c, 9);
    const auto toks = tokens(20, 3, c.vocab_size);
    auto logits = [&](const CacheOptions& o) {
      CpuModel m(c, w, o);
      auto seq = m.cache_format().new_sequence();
      std::vector<float> all, out;
      for (size_t p = 0; p < toks.size(); ++p) {  // token by token: every past token is cached
        SeqInput in{seq.get(), std::span<const int>(toks).subspan(p, 1), static_cast<int>(p), true};
        m.forward(std::span<const SeqInput>(&in, 1), out);
        all.insert(all.end(), out.begin(), out.end());
      }
      return std::pair{all, m.cache_format().name()};
    };
    CacheOptions o;
    const auto [fp16, fp16_name] = logits(o);
    float scale = 0;
    for (float x : fp16) scale = std::max(scale, std::fabs(x));
    // Rounding's yardstick: X itself cached in fp16 (XQuant at 16 bits, no latent).
    o.format = "xquant", o.bits = 16, o.latent = "off";
    const float x16 = max_diff(logits(o).first, fp16);
    o.format = "xquant-cl", o.group_size = 8, o.latent = "auto";
    for (int hp : {0, 2}) {
      for (int bits : {16, 8}) {
        o.bits = bits, o.high_precision = {hp, 8};
        if (bits == 16 && hp > 0) o.cl_base_bits = 16;
        const auto [cl_logits, name] = logits(o);
        EXPECT_EQ(name, "xquant-cl-latent:" + std::to_string(bits));
        const float d = max_diff(cl_logits, fp16);
        std::printf(
            "arch %d, %d bits, first %d layers at 8: max |logit diff| %.2e (X in fp16: "
            "%.2e, logits up to %.1f)\n",
            static_cast<int>(arch), bits, hp, d, x16, scale);
        // 16 bits: fp16 rounding of the latent and the base only, as caching X in fp16 has.
        if (bits == 16 && hp == 0) {
          EXPECT_LT(d, 3 * x16 + 1e-4f * scale) << static_cast<int>(arch);
        } else {
          EXPECT_LT(d, 0.05f * scale) << static_cast<int>(arch) << " bits " << bits << " hp " << hp;
        }
        o.cl_base_bits = 0;
      }
    }
  }
}

}  // namespace
}  // namespace xq
