// XQuant (arXiv 2508.10395) as implemented here:
// - X is the normed layer input (what Wq/Wk/Wv multiply), cached for every layer and token.
// - Quantization: uniform asymmetric with an fp16 scale and zero point per group
//   (engine/cache/quantizer.h). The paper's grouping axis and group size could not be re-read
//   from this machine (its HTML was not reachable through the search tools), so both axes exist:
//   "xquant" groups G consecutive channels of one token: a token's X is final the moment it is
//   appended, with no full-precision window and no requantization. "xquant-ch" (x_per_channel)
//   groups one channel over G tokens with an fp16 window of < G tokens, KIVI-key style, which
//   isolates activation outlier channels. Measured with tools/xquant-eval on Gemma 3 270M
//   (WikiText-2, 512 tokens, 4 bits): per-token wins at G = 32, per-channel at G = 128, where a
//   128-channel group catches Gemma's outlier channels. G is CacheOptions.group_size.
// - bits 16 caches X as fp16, the diagnostic that must match the fp16 KV cache.
// - Past K = keys(X^, positions) through the model's projector (bias, k-norm, RoPE); the new
//   tokens use their own full-precision K/V. V is folded: out_h = (sum_j p_j x^_j) Wv_h, exact;
//   fold_values = false rematerializes V instead (the simple path the fold is tested against).
// - GQA latent: X U_k and X U_v (rank kv_dim, bases from the SVDs of Wk and Wv) instead of X,
//   both per token by default (latent_k_per_token). The K latent spans the key space, so keys'
//   outlier channels suggested KIVI-style per-channel groups with an fp16 window of < G tokens
//   (latent_k = channel, kept); measured on Gemma 3 270M (WikiText-2, 512 tokens, G = 32) per
//   token was better at every width (+0.19 / +0.58 / +7.5 PPL at 4 / 3 / 2 bits against
//   +0.44 / +3.1 / +29.8), needs no window, and is what a paged GPU cache holds.
#include "engine/cache/xquant_cache.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "engine/cache/fp16_lead_rows.h"
#include "engine/cache/quantized_rows.h"
#include "engine/cache/quantizer.h"
#include "engine/cache/thread_scratch.h"
#include "engine/cache/x_attention.h"

namespace xq {
namespace {

class XQuantSequence : public SequenceCache {
 public:
  XQuantSequence(const ModelConfig& cfg, const KvProjector& proj, const XQuantOptions& opts,
                 std::shared_ptr<const LatentBasis> basis)
      : cfg_(cfg), proj_(proj), opts_(opts), basis_(std::move(basis)) {
    const int g = opts.group, lead = opts.k_fp16_channels;
    for (int l = 0; l < cfg.num_layers; ++l) {
      const int b = opts.hp.of(l, opts.bits);
      if (basis_) {
        if (opts.latent_k_per_token) {
          zkt_.emplace_back(basis_->rank, b, g, lead);
        } else {
          zk_.emplace_back(basis_->rank, b, g, lead, opts.fp16_window);
        }
        zv_.emplace_back(basis_->rank, b, g);
      } else if (opts.x_per_channel) {
        xc_.emplace_back(cfg.hidden_size, b, g, opts.fp16_window);
      } else {
        x_.emplace_back(cfg.hidden_size, b, g);
      }
    }
  }

  int rows(int layer) const {
    if (basis_) return zv_.at(layer).rows();
    return opts_.x_per_channel ? xc_.at(layer).rows() : x_.at(layer).rows();
  }

  void attend(const LayerAttnInput& in) override {
    AttentionScratch& s = thread_scratch();
    const int past = rows(in.layer);
    if (in.start_pos != past) {
      throw std::invalid_argument("xquant cache: layer " + std::to_string(in.layer) + " holds " +
                                  std::to_string(past) + " tokens, input starts at " +
                                  std::to_string(in.start_pos));
    }
    const int hidden = cfg_.hidden_size, kv_dim = cfg_.kv_dim();
    const int lo = window_start(cfg_, in.layer, past);
    s.xs.resize(static_cast<size_t>(past) * hidden);
    if (basis_) {
      s.k.resize(static_cast<size_t>(past + in.n) * kv_dim);
      attend_latent(in, lo);
    } else {
      if (opts_.x_per_channel) {
        xc_[in.layer].read(lo, past, s.xs.data() + static_cast<size_t>(lo) * hidden);
      } else {
        x_[in.layer].read(lo, past, s.xs.data() + static_cast<size_t>(lo) * hidden);
      }
      attend_over_inputs(cfg_, proj_, in, s.xs.data(), opts_.fold_values, s.k, s.v);
      if (opts_.x_per_channel) {
        xc_[in.layer].append(in.x, in.n);
      } else {
        x_[in.layer].append(in.x, in.n);
      }
    }
    drop_unseen(in.layer, window_start(cfg_, in.layer, past + in.n));
  }

  int num_tokens() const override { return rows(cfg_.num_layers - 1); }

  void truncate(int n) override {
    check_truncate(cfg_, n, num_tokens());
    for (auto& s : x_) s.truncate(n);
    for (auto& s : xc_) s.truncate(n);
    for (auto& s : zk_) s.truncate(n);
    for (auto& s : zkt_) s.truncate(n);
    for (auto& s : zv_) s.truncate(n);
  }

  size_t bytes_used() const override {
    size_t b = 0;
    for (const auto& s : x_) b += s.bytes();
    for (const auto& s : xc_) b += s.bytes();
    for (const auto& s : zk_) b += s.bytes();
    for (const auto& s : zkt_) b += s.bytes();
    for (const auto& s : zv_) b += s.bytes();
    return b;
  }

 private:
  // A sliding layer forgets the rows the next token cannot see.
  void drop_unseen(int l, int keep) {
    if (keep == 0) return;
    if (basis_) {
      if (opts_.latent_k_per_token) {
        zkt_[l].drop_before(keep);
      } else {
        zk_[l].drop_before(keep);
      }
      zv_[l].drop_before(keep);
    } else if (opts_.x_per_channel) {
      xc_[l].drop_before(keep);
    } else {
      x_[l].drop_before(keep);
    }
  }

  void attend_latent(const LayerAttnInput& in, int lo) {
    AttentionScratch& s = thread_scratch();
    const int hidden = cfg_.hidden_size, kv_dim = cfg_.kv_dim(), r = basis_->rank;
    const int past = in.start_pos;
    const float* bk = basis_->k[in.layer].data();
    const float* bv = basis_->v[in.layer].data();
    const size_t off = static_cast<size_t>(lo);
    // K: the K latent lifted back to X space, then the projector's full key path.
    s.z.resize(static_cast<size_t>(past) * r);
    if (opts_.latent_k_per_token) {
      zkt_[in.layer].read(lo, past, s.z.data() + off * r);
    } else {
      zk_[in.layer].read(lo, past, s.z.data() + off * r);
    }
    lift_rows(s.z.data() + off * r, past - lo, r, bk, hidden, s.xs.data() + off * hidden);
    remat_keys(proj_, in.layer, s.xs.data(), hidden, lo, past, kv_dim, s.k.data());
    std::copy(in.k, in.k + static_cast<size_t>(in.n) * kv_dim, s.k.begin() + past * kv_dim);
    // V: weighted means of the V latent, lifted once per head (fold), or all rows lifted.
    zv_[in.layer].read(lo, past, s.z.data() + off * r);
    if (opts_.fold_values) {
      folded_attention(cfg_, proj_, in, s.k.data(), s.z.data(), r, bv);
    } else {
      lift_rows(s.z.data() + off * r, past - lo, r, bv, hidden, s.xs.data() + off * hidden);
      s.v.resize(static_cast<size_t>(past + in.n) * kv_dim);
      remat_attention(cfg_, proj_, in, s.xs.data(), s.k.data(), s.v.data());
    }
    std::vector<float> z(static_cast<size_t>(in.n) * r);
    project_rows(in.x, in.n, hidden, bk, r, z.data());
    if (opts_.latent_k_per_token) {
      zkt_[in.layer].append(z.data(), in.n);
    } else {
      zk_[in.layer].append(z.data(), in.n);
    }
    project_rows(in.x, in.n, hidden, bv, r, z.data());
    zv_[in.layer].append(z.data(), in.n);
  }

  ModelConfig cfg_;
  const KvProjector& proj_;
  XQuantOptions opts_;
  std::shared_ptr<const LatentBasis> basis_;
  std::vector<TokenQuantRows> x_;                   // per layer, without latent
  std::vector<ChannelQuantRows> xc_;                // per layer, without latent, x_per_channel
  std::vector<Fp16LeadRows<ChannelQuantRows>> zk_;  // per layer, latent: X U_k
  std::vector<Fp16LeadRows<TokenQuantRows>> zkt_;   // per layer, latent: X U_k, per token
  std::vector<TokenQuantRows> zv_;                  // per layer, latent: X U_v
};

}  // namespace

bool resolve_latent(const std::string& mode, const ModelConfig& cfg, const KvProjector& proj) {
  if (mode == "on") return true;
  if (mode == "off") return false;
  if (mode == "auto") {
    return 2 * cfg.kv_dim() < cfg.hidden_size && proj.k_weight(0) != nullptr &&
           proj.v_weight(0) != nullptr;
  }
  throw ConfigError("xquant latent must be on, off or auto, got '" + mode + "'");
}

bool resolve_latent_k_per_token(const std::string& mode) {
  if (mode == "token" || mode == "auto") return true;
  if (mode == "channel") return false;
  throw ConfigError(
      "cache option latent_k (--xquant-latent-k) must be auto, channel or token, got '" + mode +
      "'");
}

XQuantFormat::XQuantFormat(const ModelConfig& cfg, const KvProjector& proj,
                           const XQuantOptions& opts)
    : cfg_(cfg), proj_(proj), opts_(opts) {
  for (int b : {opts.bits, opts.hp.layers > 0 ? opts.hp.bits : 16}) {
    if (b == 16) continue;
    try {
      check_quant_params(b, opts.group);
    } catch (const std::invalid_argument& e) {
      throw ConfigError(std::string("xquant cache: ") + e.what());
    }
  }
  if (opts.k_fp16_channels > 0 && !opts.latent) {
    throw ConfigError(
        "xquant cache: fp16 K latent channels (--xquant-latent-k-fp16-channels) "
        "need the GQA latent (--xquant-latent on or auto on a GQA model)");
  }
  if (opts.k_fp16_channels < 0 || opts.k_fp16_channels >= cfg.kv_dim()) {
    throw ConfigError("xquant cache: fp16 K latent channels must be in [0, kv_dim = " +
                      std::to_string(cfg.kv_dim()) + "), got " +
                      std::to_string(opts.k_fp16_channels));
  }
  if (opts.latent && opts.x_per_channel) {
    throw ConfigError("xquant cache: the latent has its own grouping; x_per_channel is for X");
  }
  if (opts.latent_k_per_token && !opts.latent) {
    throw ConfigError("xquant cache: latent_k_per_token groups the K latent; it needs latent");
  }
  if (opts.latent) basis_ = std::make_shared<LatentBasis>(compute_latent_basis(cfg, proj));
}

std::string XQuantFormat::name() const {
  const char* kind = opts_.latent_k_per_token ? "xquant-latent-tok:"
                     : opts_.latent           ? "xquant-latent:"
                     : opts_.x_per_channel    ? "xquant-ch:"
                                              : "xquant:";
  std::string name = kind;
  // "xquant-latent:2" -> "xquant-latent-k16x1:2": the K latent's first channel in fp16.
  if (opts_.k_fp16_channels > 0)
    name.insert(name.size() - 1, "-k16x" + std::to_string(opts_.k_fp16_channels));
  return name + std::to_string(opts_.bits);
}

namespace {

// Bytes of one row of `width` values cached per token, and of one token's share of a per-channel
// block (its fp16 window aside).
double token_row_bytes(int width, int bits, int group) {
  return bits == 16 ? 2.0 * width : static_cast<double>(quantized_bytes(width, bits, group));
}
double channel_row_bytes(int width, int bits, int group) {
  if (bits == 16) return 2.0 * width;
  return static_cast<double>(quantized_bytes(static_cast<size_t>(width) * group, bits, group)) /
         group;
}

}  // namespace

double XQuantFormat::layer_bytes_per_token(int layer) const {
  const int g = opts_.group, b = opts_.hp.of(layer, opts_.bits);
  if (!basis_ && opts_.x_per_channel) return channel_row_bytes(cfg_.hidden_size, b, g);
  if (!basis_) return token_row_bytes(cfg_.hidden_size, b, g);
  const int r = basis_->rank, lead = opts_.k_fp16_channels;
  const double k = 2.0 * lead + (opts_.latent_k_per_token ? token_row_bytes(r - lead, b, g)
                                                          : channel_row_bytes(r - lead, b, g));
  return k + token_row_bytes(r, b, g);
}

// Whether some rows sit in per-channel blocks (with their fp16 window of < G tokens).
bool XQuantFormat::channel_blocks() const {
  if (opts_.bits == 16 && (opts_.hp.layers == 0 || opts_.hp.bits == 16)) return false;
  return basis_ ? !opts_.latent_k_per_token : opts_.x_per_channel;
}

int XQuantFormat::sliding_slack_tokens() const { return channel_blocks() ? opts_.group - 1 : 0; }

double XQuantFormat::window_bytes_max() const {
  if (!channel_blocks()) return 0.0;
  const int g = opts_.group, lead = basis_ ? opts_.k_fp16_channels : 0;
  const int r = (basis_ ? basis_->rank : cfg_.hidden_size) - lead;
  double b = 0;
  for (int l = 0; l < cfg_.num_layers; ++l) {
    const int bits = opts_.hp.of(l, opts_.bits);
    if (bits != 16) b += (g - 1) * (2.0 * r - channel_row_bytes(r, bits, g));
  }
  return b;
}

std::unique_ptr<SequenceCache> XQuantFormat::new_sequence() const {
  return std::make_unique<XQuantSequence>(cfg_, proj_, opts_, basis_);
}

}  // namespace xq
