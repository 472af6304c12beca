// The GQA latent with its K latent grouped per token (CacheOptions.latent_k = "token", the layout
// the paged GPU cache holds) against the per-channel K latent, exact attention and its own byte
// formula.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/cache/cache_format.h"
#include "engine/cache/quantizer.h"
#include "engine/cache/xquant_cache.h"
#include "tests/unit/engine_cache_bench.h"

namespace xq {
namespace {

using namespace cache_test;

// Both latents per token: every token costs the same from the first on, with no fp16 window, so
// bytes_used() is t times the format's per-token bytes after every step.
TEST(LatentPerTokenK, BytesUsedEqualsTheFormulaTokenByToken) {
  Bench s("gqa", 40);
  const int L = s.cfg.num_layers, r = s.cfg.kv_dim();
  for (int bits : {2, 3, 4, 8, 16}) {
    const auto fmt = make("latent-tok", s.cfg, s.proj, bits);
    const double row = bits == 16 ? 2.0 * r : static_cast<double>(quantized_bytes(r, bits, kGroup));
    EXPECT_DOUBLE_EQ(fmt->bytes_per_token(), L * 2 * row) << bits;
    EXPECT_DOUBLE_EQ(fmt->window_bytes_max(), 0.0) << bits;
    auto seq = fmt->new_sequence();
    Outputs o;
    for (int t = 1; t <= s.work.tokens; ++t) {
      run(s.cfg, s.work, *seq, t - 1, t, 1, o);
      EXPECT_DOUBLE_EQ(static_cast<double>(seq->bytes_used()), t * fmt->bytes_per_token())
          << bits << " bits, t=" << t;
    }
    // A chunked prefill holds the same bytes.
    auto chunked = fmt->new_sequence();
    run(s.cfg, s.work, *chunked, 0, s.work.tokens, 13, o);
    EXPECT_EQ(chunked->bytes_used(), seq->bytes_used()) << bits;
  }
}

// Sliding layers keep exactly their window: no per-channel block to keep whole.
TEST(LatentPerTokenK, SlidingLayersHoldExactlyTheirWindow) {
  Bench s("sliding");
  for (int bits : {3, 16}) {
    const auto tok = make("latent-tok", s.cfg, s.proj, bits);
    EXPECT_EQ(tok->sliding_tokens(), s.cfg.sliding_window - 1) << bits;
    auto seq = tok->new_sequence();
    Outputs o;
    for (int t = 1; t <= s.work.tokens; ++t) {
      run(s.cfg, s.work, *seq, t - 1, t, 1, o);
      EXPECT_DOUBLE_EQ(static_cast<double>(seq->bytes_used()), tok->sequence_bytes(t))
          << bits << " bits, t=" << t;
    }
  }
  EXPECT_EQ(make("latent", s.cfg, s.proj, 3)->sliding_tokens(),
            s.cfg.sliding_window - 1 + kGroup - 1);
}

// At 16 bits both groupings store the same fp16 rows: the same attention, to the bit.
TEST(LatentPerTokenK, SixteenBitsMatchesThePerChannelLatent) {
  for (const char* kind : {"gqa", "sliding"}) {
    Bench s(kind);
    for (bool fold : {true, false}) {
      for (int chunk : {1, 9}) {
        const Outputs tok = s.decode(*make("latent-tok", s.cfg, s.proj, 16, fold), chunk);
        const Outputs ch = s.decode(*make("latent", s.cfg, s.proj, 16, fold), chunk);
        EXPECT_EQ(tok, ch) << kind << " fold " << fold << " chunk " << chunk;
        EXPECT_LT(rel_error(s.cfg, tok, s.ref, 0), 2e-3) << kind;
      }
    }
  }
}

// 4 bits: the per-token K latent stays close to the unquantized latent and to exact attention,
// while its quantization is really there (the outputs differ from the 16-bit ones).
TEST(LatentPerTokenK, FourBitsStaysNearTheUnquantizedLatent) {
  for (const char* kind : {"gqa", "sliding"}) {
    Bench s(kind);
    const Outputs fp = s.decode(*make("latent-tok", s.cfg, s.proj, 16));
    const Outputs q4 = s.decode(*make("latent-tok", s.cfg, s.proj, 4));
    const Outputs ch4 = s.decode(*make("latent", s.cfg, s.proj, 4));
    const double e = rel_error(s.cfg, q4, fp, kGroup);
    const double e_ch = rel_error(s.cfg, ch4, fp, kGroup);
    std::printf("%-8s 4 bits: K latent per token %.5f, per channel %.5f (vs 16-bit latent)\n", kind,
                e, e_ch);
    EXPECT_GT(e, 1e-4) << kind;
    EXPECT_LT(e, 0.1) << kind;
    EXPECT_LT(rel_error(s.cfg, q4, s.ref, kGroup), 0.1) << kind;
  }
}

TEST(LatentPerTokenK, FactoryResolvesTheOption) {
  Bench s("gqa", 4);
  CacheOptions o;
  o.format = "xquant", o.bits = 4, o.group_size = kGroup;
  const std::vector<std::pair<std::string, std::string>> names = {{"auto", "xquant-latent-tok:4"},
                                                                  {"channel", "xquant-latent:4"},
                                                                  {"token", "xquant-latent-tok:4"}};
  for (const auto& [latent_k, name] : names) {
    o.latent_k = latent_k;
    EXPECT_EQ(make_cache_format(o, s.cfg, s.proj)->name(), name) << latent_k;
  }
  // Without the latent there is no K latent to group: X per token as before.
  o.latent = "off", o.latent_k = "token";
  EXPECT_EQ(make_cache_format(o, s.cfg, s.proj)->name(), "xquant:4");
  o.latent = "auto", o.latent_k = "row";
  try {
    make_cache_format(o, s.cfg, s.proj);
    ADD_FAILURE() << "latent_k 'row' was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("latent_k"), std::string::npos) << e.what();
  }
  XQuantOptions x;
  x.bits = 4, x.group = kGroup, x.latent_k_per_token = true;  // no latent
  EXPECT_THROW(XQuantFormat(s.cfg, s.proj, x), ConfigError);
}

}  // namespace
}  // namespace xq
