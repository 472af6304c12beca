// XQuant-CL (arXiv 2508.10395, the cross-layer section) as implemented here:
// - Which tensor the deltas are taken on (opts.residual):
//   residual: the pre-norm residual stream R_l entering layer l, the tensor the paper's premise
//   is about (successive layers add small updates to it). K/V of the past are rebuilt from
//   norm_input(l, A_l), the layer's own attention-input RMSNorm of the reconstruction.
//   normed: X_l = norm_l(R_l) itself.
//   Measured with tools/xquant-eval on Gemma 3 270M (/work/notes/accuracy-table.md): with
//   per-channel groups the residual stream wins by far (its deltas are small per channel, and
//   Gemma's per-layer norm weights make X_l - X_{l-1} large); with per-token groups it loses by
//   far, because one channel of Gemma's residual stream carries ~1e5 against ~10 elsewhere and
//   sets every step of its group. So each grouping's name defaults to its better stream
//   (cl_default_residual): xquant-cl = per-token on X, xquant-cl-ch = per-channel on R.
// - Accumulator: A_0 = deq(Q(S_0)); for layer l > 0 the cache holds D_l = Q(S_l - A_{l-1}) and
//   A_l = A_{l-1} + deq(D_l) (S = R or X). The delta is taken against the reconstruction, not
//   against the exact S_{l-1}, so quantization error never accumulates across layers: A_l is
//   within one delta quantization step of S_l at every depth.
// - Base layer: layer 0 holds S itself, whose range is far wider than a delta's, so it gets
//   base_bits = max(bits, 4) by default (the paper keeps the first layer at a higher width; the
//   exact width could not be re-read from here, so it is an option).
// - Groups: per token, G consecutive channels, fp16 scale and zero point (as for XQuant's X), so
//   every token is final on append and no full-precision window exists; the per-channel
//   grouping is xquant_cl_channel.cpp.
// - Rebuilding A_l of the past needs all deltas up to l; the sequence keeps the running sum of
//   the past as scratch while the model walks the layers in order (one add per layer), and
//   rebuilds it from scratch when layers come out of order.
#include "engine/cache/xquant_cl_cache.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "engine/cache/quantized_rows.h"
#include "engine/cache/quantizer.h"
#include "engine/cache/x_attention.h"
#include "engine/cache/xquant_cl_channel.h"

namespace xq {
namespace {

class XQuantCLSequence : public SequenceCache {
 public:
  XQuantCLSequence(const ModelConfig& cfg, const KvProjector& proj, const XQuantCLOptions& opts)
      : cfg_(cfg), proj_(proj), opts_(opts) {
    for (int l = 0; l < cfg.num_layers; ++l)
      d_.emplace_back(cfg.hidden_size, l == 0 ? opts.base_bits : opts.bits, opts.group);
  }

  void attend(const LayerAttnInput& in) override {
    const int l = in.layer, past = d_.at(l).rows();
    if (in.start_pos != past) {
      throw std::invalid_argument("xquant-cl cache: layer " + std::to_string(l) + " holds " +
                                  std::to_string(past) + " tokens, input starts at " +
                                  std::to_string(in.start_pos));
    }
    const int hidden = cfg_.hidden_size, kv_dim = cfg_.kv_dim();
    const size_t h = hidden;
    const float* src = cl_source(in, opts_.residual);
    reconstruct_past(l, past);
    const int lo = first_visible(cfg_, l, past);
    const float* xs = cl_past_inputs(proj_, l, past_, lo, past, hidden, opts_.residual, xs_);
    k_.resize(static_cast<size_t>(past + in.n) * kv_dim);
    remat_keys(proj_, l, xs, hidden, lo, past, kv_dim, k_.data());
    std::copy(in.k, in.k + static_cast<size_t>(in.n) * kv_dim, k_.begin() + past * kv_dim);
    if (opts_.fold_values) {
      folded_attention(cfg_, proj_, in, k_.data(), xs, hidden, nullptr);
    } else {
      v_.resize(static_cast<size_t>(past + in.n) * kv_dim);
      remat_attention(cfg_, proj_, in, xs, k_.data(), v_.data());
    }

    // The new tokens: their delta against the accumulator of layer l-1, then A_l.
    const size_t m = static_cast<size_t>(in.n) * h;
    if (l > 0 && !(new_layer_ == l - 1 && new_start_ == past && new_n_ == in.n)) {
      sum_layers(l - 1, past, past + in.n, new_);
    }
    new_.resize(m);
    std::vector<float> delta(m);
    for (size_t i = 0; i < m; ++i) delta[i] = l == 0 ? src[i] : src[i] - new_[i];
    d_[l].append(delta.data(), in.n);
    d_[l].read(past, past + in.n, delta.data());
    for (size_t i = 0; i < m; ++i) new_[i] = l == 0 ? delta[i] : new_[i] + delta[i];
    new_layer_ = l, new_start_ = past, new_n_ = in.n;
  }

  int num_tokens() const override { return d_.back().rows(); }

  void truncate(int n) override {
    for (auto& d : d_) d.truncate(n);
    past_layer_ = new_layer_ = -1;
  }

  size_t bytes_used() const override {
    size_t b = 0;
    for (const auto& d : d_) b += d.bytes();
    return b;
  }

 private:
  // past_ = A_l of rows [0, past): one add onto A_{l-1} when the model walks layers in order.
  void reconstruct_past(int l, int past) {
    const size_t n = static_cast<size_t>(past) * cfg_.hidden_size;
    if (l > 0 && past_layer_ == l - 1 && past_rows_ == past) {
      tmp_.resize(n);
      d_[l].read(0, past, tmp_.data());
      for (size_t i = 0; i < n; ++i) past_[i] += tmp_[i];
    } else {
      sum_layers(l, 0, past, past_);
    }
    past_layer_ = l, past_rows_ = past;
  }

  // out = sum over layers 0..l of the dequantized rows [begin, end) = A_l of those rows.
  void sum_layers(int l, int begin, int end, std::vector<float>& out) {
    const size_t n = static_cast<size_t>(end - begin) * cfg_.hidden_size;
    out.assign(n, 0.0f);
    tmp_.resize(n);
    for (int m = 0; m <= l; ++m) {
      d_[m].read(begin, end, tmp_.data());
      for (size_t i = 0; i < n; ++i) out[i] += tmp_[i];
    }
  }

  ModelConfig cfg_;
  const KvProjector& proj_;
  XQuantCLOptions opts_;
  std::vector<TokenQuantRows> d_;  // per layer: S_0, then the deltas
  std::vector<float> past_;        // A of the past at layer past_layer_ (scratch)
  std::vector<float> xs_;          // norm_input of past_ (scratch, residual deltas)
  int past_layer_ = -1, past_rows_ = 0;
  std::vector<float> new_;  // A of the in-flight new tokens at layer new_layer_
  int new_layer_ = -1, new_start_ = 0, new_n_ = 0;
  std::vector<float> k_, v_, tmp_;  // scratch
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

XQuantCLFormat::XQuantCLFormat(const ModelConfig& cfg, const KvProjector& proj,
                               const XQuantCLOptions& opts)
    : cfg_(cfg), proj_(proj), opts_(opts) {
  if (opts_.base_bits == 0) opts_.base_bits = opts.bits == 16 ? 16 : std::max(opts.bits, 4);
  for (int b : {opts_.bits, opts_.base_bits}) {
    if (b == 16) continue;
    try {
      check_quant_params(b, opts.group);
    } catch (const std::invalid_argument& e) {
      throw ConfigError(std::string("xquant-cl cache: ") + e.what());
    }
  }
}

std::string XQuantCLFormat::name() const {
  std::string kind = opts_.per_channel ? "xquant-cl-ch" : "xquant-cl";
  if (opts_.residual != cl_default_residual(opts_.per_channel))
    kind += opts_.residual ? "-residual" : "-normed";
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

double XQuantCLFormat::bytes_per_token() const {
  const int h = cfg_.hidden_size, g = opts_.group;
  const bool pc = opts_.per_channel;
  return layer_row_bytes(h, opts_.base_bits, g, pc) +
         (cfg_.num_layers - 1) * layer_row_bytes(h, opts_.bits, g, pc);
}

double XQuantCLFormat::window_bytes_max() const {
  if (!opts_.per_channel) return 0.0;
  const int h = cfg_.hidden_size, g = opts_.group;
  const double win = static_cast<double>(cl_window_value_bytes(opts_)) * h;
  return (g - 1) * ((win - layer_row_bytes(h, opts_.base_bits, g, true)) +
                    (cfg_.num_layers - 1) * (win - layer_row_bytes(h, opts_.bits, g, true)));
}

std::unique_ptr<SequenceCache> XQuantCLFormat::new_sequence() const {
  if (opts_.per_channel) return new_cl_channel_sequence(cfg_, proj_, opts_);
  return std::make_unique<XQuantCLSequence>(cfg_, proj_, opts_);
}

}  // namespace xq
