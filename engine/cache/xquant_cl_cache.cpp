// XQuant-CL (arXiv 2508.10395, the cross-layer section) as implemented here:
// - Which tensor the deltas are taken on (opts.residual):
//   residual: the pre-norm residual stream R_l entering layer l, the tensor the paper's premise
//   is about (successive layers add small updates to it). K/V of the past are rebuilt from
//   norm_input(l, A_l), the layer's own attention-input RMSNorm of the reconstruction.
//   normed: X_l = norm_l(R_l) itself.
//   Measured with tools/xquant-eval on Gemma 3 270M (README, Accuracy): with
//   per-channel groups the residual stream wins by far (its deltas are small per channel, and
//   Gemma's per-layer norm weights make X_l - X_{l-1} large); with per-token groups it loses by
//   far, because one channel of Gemma's residual stream carries ~1e5 against ~10 elsewhere and
//   sets every step of its group. So each grouping's name defaults to its better stream
//   (cl_default_residual): xquant-cl = per-token on X, xquant-cl-ch = per-channel on R.
// - Accumulator: A_0 = deq(Q(S_0)); for layer l > 0 the cache holds D_l = Q(S_l - A_{l-1}) and
//   A_l = A_{l-1} + deq(D_l) (S = R or X). The delta is taken against the reconstruction, not
//   against the exact S_{l-1}, so quantization error never accumulates across layers: A_l is
//   within one delta quantization step of S_l at every depth.
// - Base layer: a chain's first layer holds S itself, whose range is far wider than a delta's,
//   so it gets base_bits = max(bits, 4) by default. With the paper's Table 4 setting
//   (hp.layers = 3 at 4 bits) layers 0 and 1 are cached on their own at 4 bits, layer 2 is the
//   4-bit base the accumulator starts from, and the deltas begin at layer 3. The paper's
//   "accumulator kept at e_b = 4 bits" is read as that base width; the running sum itself is
//   fp32 (it is scratch, rebuilt from the cache at each step, never stored).
// - GQA models (opts.latent, the paper's form): layer l caches Q(dX_l Ukv_l), Ukv_l an
//   orthonormal basis of the row space of [Wk_l; Wv_l] (2 kv_dim wide); the accumulator stays
//   in X space, A_l = A_{l-1} + deq(Q(dX_l Ukv_l)) Ukv_l^T (ClRows), and K, V come from A_l
//   through the projector as usual. Lossless without quantization: A_l Ukv_l = A_{l-1} Ukv_l +
//   (X_l - A_{l-1}) Ukv_l = X_l Ukv_l, and K, V depend on A_l only through A_l Ukv_l. A base
//   that the chain starts from stays X-wide (the accumulator starts from it in X space), or with
//   base_latent is cached on its basis too (A_b = X_b Ukv_b Ukv_b^T: still lossless, since each
//   later layer reads only its own projection of A); the high-precision layers before it are
//   cached on their basis (X_l Ukv_l).
// - Groups: per token, G consecutive channels, fp16 scale and zero point (as for XQuant's X), so
//   every token is final on append and no full-precision window exists; the per-channel
//   grouping is xquant_cl_channel.cpp.
// - Rebuilding A_l of the past needs all deltas up to l; the sequence keeps the running sum of
//   the past as scratch while the model walks the layers in order (one add per layer), and
//   rebuilds it from scratch when layers come out of order.
// - Sliding-window layers (Gemma 3): "layer l-1" above is the previous layer of l's chain
//   (cl_chains): the global layers chain among themselves with their own base, and so do the
//   sliding ones, which forget a token once it left the window (after the step's last layer,
//   since later sliding layers of the step still rebuild the same rows through the earlier
//   ones). Each chain keeps its own running sums. The global chain's deltas span several
//   layers (6 on Gemma 3), so they are wider than adjacent layers' would be: the price of a
//   sliding layer holding only its window.
#include "engine/cache/xquant_cl_cache.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "engine/cache/quantized_rows.h"
#include "engine/cache/quantizer.h"
#include "engine/cache/thread_scratch.h"
#include "engine/cache/x_attention.h"
#include "engine/cache/xquant_cl_chain.h"
#include "engine/cache/xquant_cl_channel.h"
#include "engine/cache/xquant_cl_rows.h"
#include "engine/cache/xquant_latent.h"

namespace xq {
namespace {

class XQuantCLSequence : public SequenceCache {
 public:
  XQuantCLSequence(const ModelConfig& cfg, const KvProjector& proj, const XQuantCLOptions& opts,
                   std::shared_ptr<const ClPlan> plan)
      : cfg_(cfg), proj_(proj), opts_(opts), plan_(std::move(plan)), prev_(plan_->prev) {
    for (int l = 0; l < cfg.num_layers; ++l)
      d_.emplace_back(cfg.hidden_size, plan_->basis(l), plan_->bits[l], opts.group);
  }

  void attend(const LayerAttnInput& in) override {
    AttentionScratch& s = thread_scratch();
    const int l = in.layer, past = d_.at(l).rows();
    if (in.start_pos != past) {
      throw std::invalid_argument("xquant-cl cache: layer " + std::to_string(l) + " holds " +
                                  std::to_string(past) + " tokens, input starts at " +
                                  std::to_string(in.start_pos));
    }
    const int hidden = cfg_.hidden_size;
    const size_t h = hidden;
    const float* src = cl_source(in, opts_.residual);
    const int lo = window_start(cfg_, l, past);
    Chain& ch = chains_[chain_of(l)];
    ch.past.rows.resize(static_cast<size_t>(past) * h);
    advance_running_sum(d_, prev_, l, lo, past, hidden, ch.past, s.tmp, s.tmp2);
    const float* xs =
        cl_past_inputs(proj_, l, ch.past.rows, lo, past, hidden, opts_.residual, s.xs);
    attend_over_inputs(cfg_, proj_, in, xs, opts_.fold_values, s.k, s.v);

    // The new tokens: their delta against the accumulator of the chain's previous layer p,
    // then A_l.
    const int p = prev_[l];
    const size_t m = static_cast<size_t>(in.n) * h;
    if (p >= 0 && !(ch.new_layer == p && ch.new_start == past && ch.new_n == in.n)) {
      chain_sum(d_, prev_, p, past, past + in.n, hidden, ch.fresh, s.tmp);
    }
    ch.fresh.resize(m);
    std::vector<float> delta(m);
    for (size_t i = 0; i < m; ++i) delta[i] = p < 0 ? src[i] : src[i] - ch.fresh[i];
    d_[l].append(delta.data(), in.n);
    d_[l].read(past, past + in.n, delta.data());
    for (size_t i = 0; i < m; ++i) ch.fresh[i] = p < 0 ? delta[i] : ch.fresh[i] + delta[i];
    ch.new_layer = l, ch.new_start = past, ch.new_n = in.n;
    if (l == cfg_.num_layers - 1) {  // the step's last layer
      for (int m = 0; m < cfg_.num_layers; ++m)
        d_[m].drop_before(window_start(cfg_, m, past + in.n));
      // The running sums are rebuilt at the next step's first layer anyway: free them rather
      // than keep a context-sized buffer per sequence between steps.
      for (Chain& c : chains_) c.past = RunningSum{};
    }
  }

  int num_tokens() const override { return d_.back().rows(); }

  void truncate(int n) override {
    check_truncate(cfg_, n, num_tokens());
    for (auto& d : d_) d.truncate(n);
    for (Chain& c : chains_) c.past.layer = c.new_layer = -1;
  }

  size_t bytes_used() const override {
    size_t b = 0;
    for (const auto& d : d_) b += d.bytes();
    return b;
  }

 private:
  // A chain's running sums (scratch).
  struct Chain {
    RunningSum past;           // A of the past rows in the window
    std::vector<float> fresh;  // A of the in-flight new tokens at layer new_layer
    int new_layer = -1, new_start = 0, new_n = 0;
  };
  int chain_of(int l) const { return cfg_.sliding_window > 0 && cfg_.is_sliding(l) ? 1 : 0; }

  ModelConfig cfg_;
  const KvProjector& proj_;
  XQuantCLOptions opts_;
  std::shared_ptr<const ClPlan> plan_;
  std::vector<int> prev_;                  // plan_->prev
  std::vector<ClRows<TokenQuantRows>> d_;  // per layer: a chain's base S, or its delta
  Chain chains_[2];                        // global layers, sliding layers
};

}  // namespace

const float* cl_source(const LayerAttnInput& in, bool residual) {
  if (!residual) return in.x;
  if (in.residual == nullptr) {
    throw std::invalid_argument("xquant-cl cache (residual stream): layer " +
                                std::to_string(in.layer) + " input carries no residual");
  }
  return in.residual;
}

const float* cl_past_inputs(const KvProjector& proj, int l, const std::vector<float>& acc, int lo,
                            int past, int hidden, bool residual, std::vector<float>& xs) {
  if (!residual) return acc.data();
  const size_t off = static_cast<size_t>(lo) * hidden;
  xs.resize(static_cast<size_t>(past) * hidden);
  if (past > lo) proj.norm_input(l, acc.data() + off, past - lo, xs.data() + off);
  return xs.data();
}

std::vector<int> cl_chains(const ModelConfig& cfg, int first_chained) {
  std::vector<int> prev(cfg.num_layers, -1);
  const bool split = cfg.sliding_window > 0;
  int last[2] = {-1, -1};
  for (int l = std::max(0, first_chained); l < cfg.num_layers; ++l) {
    const int c = split && cfg.is_sliding(l) ? 1 : 0;
    prev[l] = last[c];
    last[c] = l;
  }
  return prev;
}

namespace {

ClPlan make_plan(const ModelConfig& cfg, const KvProjector& proj, const XQuantCLOptions& o) {
  ClPlan p;
  p.prev = cl_chains(cfg, o.hp.layers - 1);
  std::vector<bool> chained_to(cfg.num_layers, false);
  for (int m : p.prev)
    if (m >= 0) chained_to[m] = true;
  std::vector<std::vector<float>> kv_bases;
  if (o.latent) kv_bases = kv_row_space_bases(cfg, proj);
  p.bases.resize(cfg.num_layers);
  for (int l = 0; l < cfg.num_layers; ++l) {
    // A chain's start holds S itself (base bits); a high-precision layer before the first chain
    // is cached on its own. Only a start that others chain to must be X-wide.
    const bool start = p.prev[l] < 0 && l >= o.hp.layers - 1;
    p.bits.push_back(start ? o.base_bits : o.hp.of(l, o.bits));
    const bool x_wide = p.prev[l] < 0 && chained_to[l] && !o.base_latent;
    if (o.latent && !x_wide) p.bases[l] = std::move(kv_bases[l]);
  }
  return p;
}

}  // namespace

XQuantCLFormat::XQuantCLFormat(const ModelConfig& cfg, const KvProjector& proj,
                               const XQuantCLOptions& opts)
    : cfg_(cfg), proj_(proj), opts_(opts) {
  if (opts_.base_bits == 0) {
    opts_.base_bits = opts.hp.layers > 0 ? opts.hp.bits
                      : opts.bits == 16  ? 16
                                         : std::max(opts.bits, 4);
  }
  if (opts_.latent && opts_.residual) {
    throw ConfigError(
        "xquant-cl latent: deltas on the residual stream cannot be cached on the basis of [Wk; "
        "Wv] (the layer's norm of a projected stream is not the projection of the norm); use "
        "the normed X (xquant-cl, xquant-cl-ch-normed) or --xquant-latent off");
  }
  for (int b : {opts_.bits, opts_.base_bits, opts_.hp.layers > 0 ? opts_.hp.bits : 16}) {
    if (b == 16) continue;
    try {
      check_quant_params(b, opts.group);
    } catch (const std::invalid_argument& e) {
      throw ConfigError(std::string("xquant-cl cache: ") + e.what());
    }
  }
  plan_ = std::make_shared<const ClPlan>(make_plan(cfg, proj, opts_));
}

std::string XQuantCLFormat::name() const {
  std::string kind = opts_.per_channel ? "xquant-cl-ch" : "xquant-cl";
  // The latent is always of X (normed), whatever the grouping's default stream.
  if (opts_.latent) {
    kind += opts_.base_latent ? "-latent-lb" : "-latent";
  } else if (opts_.residual != cl_default_residual(opts_.per_channel)) {
    kind += opts_.residual ? "-residual" : "-normed";
  }
  return kind + ":" + std::to_string(opts_.bits);
}

namespace {

// One token's bytes in one layer at `bits`: its row, or its share of a per-channel block.
double layer_row_bytes(int h, int bits, int g, bool per_channel) {
  if (bits == 16) return 2.0 * h;
  if (!per_channel) return static_cast<double>(quantized_bytes(h, bits, g));
  return static_cast<double>(quantized_bytes(static_cast<size_t>(h) * g, bits, g)) / g;
}

}  // namespace

double XQuantCLFormat::layer_bytes_per_token(int layer) const {
  return layer_row_bytes(plan_->width(layer, cfg_.hidden_size), plan_->bits.at(layer), opts_.group,
                         opts_.per_channel);
}

// The per-channel variant's window holds S (X-wide, whatever the layer's stored width).
double XQuantCLFormat::window_bytes_max() const {
  if (!opts_.per_channel) return 0.0;
  const double win = static_cast<double>(cl_window_value_bytes(opts_)) * cfg_.hidden_size;
  double b = 0;
  for (int l = 0; l < cfg_.num_layers; ++l) b += win - layer_bytes_per_token(l);
  return (opts_.group - 1) * b;
}

int XQuantCLFormat::sliding_slack_tokens() const {
  if (!opts_.per_channel) return 0;
  for (int b : plan_->bits)
    if (b != 16) return opts_.group - 1;
  return 0;
}

std::unique_ptr<SequenceCache> XQuantCLFormat::new_sequence() const {
  if (opts_.per_channel) return new_cl_channel_sequence(cfg_, proj_, opts_, plan_);
  return std::make_unique<XQuantCLSequence>(cfg_, proj_, opts_, plan_);
}

}  // namespace xq
