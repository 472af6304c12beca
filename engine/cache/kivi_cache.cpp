// KIVI as the paper (arXiv 2402.02750, Algorithm 1 and its released code) does it:
// - Keys (post-RoPE, as cached) are quantized per channel: each channel's values over a group of
//   G consecutive tokens share a scale and zero point, because keys have a few outlier channels
//   whose magnitude is stable across tokens. Per-channel groups need G tokens, so the newest
//   T mod G keys stay in full precision (fp16 here) and are quantized together when the group
//   fills.
// - Values are quantized per token in groups of G channels: attention mixes values per token, so
//   per-token error stays local. KIVI keeps the most recent R values in full precision as a
//   sliding window; here R = G (the brief's "< one key group" window; the paper's R = 128 with
//   G = 32 is the same mechanism with a longer window).
// - Attention reads the dequantized past plus the new tokens' own full-precision K/V.
// Memory: bytes_per_token() counts each token once quantized (codes + fp16 scale/zero point per
// group; a key block's per-channel parameters are shared by its G tokens, so divided by G). The
// fp16 windows (at most G-1 keys and G values per layer) are a per-sequence constant, reported
// by window_bytes_max(); like the compression ratios KIVI and XQuant quote for long contexts,
// the per-token figure leaves them out.
#include "engine/cache/kivi_cache.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "engine/cache/layer_attention.h"
#include "engine/cache/quantized_rows.h"
#include "engine/cache/quantizer.h"
#include "engine/cache/thread_scratch.h"
#include "engine/cache/x_attention.h"

namespace xq {
namespace {

class KiviSequence : public SequenceCache {
 public:
  KiviSequence(const ModelConfig& cfg, int bits, int group, HighPrecisionLayers hp,
               bool fp16_window)
      : cfg_(cfg) {
    for (int l = 0; l < cfg.num_layers; ++l) {
      k_.emplace_back(cfg.kv_dim(), hp.of(l, bits), group, fp16_window);
      v_.emplace_back(cfg.kv_dim(), hp.of(l, bits), group, fp16_window ? group : 0);
    }
  }

  void attend(const LayerAttnInput& in) override {
    AttentionScratch& s = thread_scratch();
    const int kv_dim = cfg_.kv_dim();
    const int past = k_.at(in.layer).rows();
    if (in.start_pos != past) {
      throw std::invalid_argument("kivi cache: layer " + std::to_string(in.layer) + " holds " +
                                  std::to_string(past) + " tokens, input starts at " +
                                  std::to_string(in.start_pos));
    }
    const size_t rows = static_cast<size_t>(past + in.n);
    s.k.resize(rows * kv_dim);
    s.v.resize(rows * kv_dim);
    const int lo = window_start(cfg_, in.layer, past);
    k_[in.layer].read(lo, past, s.k.data() + static_cast<size_t>(lo) * kv_dim);
    v_[in.layer].read(lo, past, s.v.data() + static_cast<size_t>(lo) * kv_dim);
    std::copy(in.k, in.k + static_cast<size_t>(in.n) * kv_dim, s.k.begin() + past * kv_dim);
    std::copy(in.v, in.v + static_cast<size_t>(in.n) * kv_dim, s.v.begin() + past * kv_dim);
    causal_attention(cfg_, in.layer, in.q, in.n, in.start_pos, s.k.data(), s.v.data(), in.out);
    k_[in.layer].append(in.k, in.n);
    v_[in.layer].append(in.v, in.n);
    const int keep = window_start(cfg_, in.layer, past + in.n);  // what the next token sees
    k_[in.layer].drop_before(keep);
    v_[in.layer].drop_before(keep);
  }

  int num_tokens() const override { return k_.back().rows(); }

  void truncate(int n) override {
    check_truncate(cfg_, n, num_tokens());
    for (auto& k : k_) k.truncate(n);
    for (auto& v : v_) v.truncate(n);
  }

  size_t bytes_used() const override {
    size_t b = 0;
    for (const auto& k : k_) b += k.bytes();
    for (const auto& v : v_) b += v.bytes();
    return b;
  }

 private:
  ModelConfig cfg_;
  std::vector<ChannelQuantRows> k_;
  std::vector<TokenQuantRows> v_;
};

}  // namespace

KiviFormat::KiviFormat(const ModelConfig& cfg, int bits, int group, HighPrecisionLayers hp,
                       bool fp16_window)
    : cfg_(cfg), bits_(bits), group_(group), hp_(hp), fp16_window_(fp16_window) {
  try {
    check_quant_params(bits, group);
    if (hp.layers > 0) check_quant_params(hp.bits, group);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(std::string("kivi cache: ") + e.what());
  }
}

namespace {

// A token's key share of its per-channel block, and its value row, at `bits`.
double key_bytes(size_t kv, int bits, int group) {
  return static_cast<double>(quantized_bytes(kv * group, bits, group)) / group;
}
double value_bytes(size_t kv, int bits, int group) {
  return static_cast<double>(quantized_bytes(kv, bits, group));
}

}  // namespace

double KiviFormat::layer_bytes_per_token(int layer) const {
  const size_t kv = cfg_.kv_dim();
  const int b = hp_.of(layer, bits_);
  return key_bytes(kv, b, group_) + value_bytes(kv, b, group_);
}

// The unfilled key block is held in fp16 with or without the window (fp16_window false only
// changes how it is read); the value window exists only with it.
double KiviFormat::window_bytes_max() const {
  const size_t kv = cfg_.kv_dim();
  const double fp16 = 2.0 * kv;
  double b = 0;
  for (int l = 0; l < cfg_.num_layers; ++l) {
    const int bits = hp_.of(l, bits_);
    b += (group_ - 1) * (fp16 - key_bytes(kv, bits, group_));
    if (fp16_window_) b += group_ * (fp16 - value_bytes(kv, bits, group_));
  }
  return b;
}

std::unique_ptr<SequenceCache> KiviFormat::new_sequence() const {
  return std::make_unique<KiviSequence>(cfg_, bits_, group_, hp_, fp16_window_);
}

}  // namespace xq
