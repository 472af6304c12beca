// XQuant-CL with per-channel groups ("xquant-cl-ch"): the cross-layer accumulator of
// xquant_cl_cache.cpp, with channel outliers handled the way KIVI handles keys'. S is the tensor
// the deltas are taken on (the residual stream or X, opts.residual).
// - Every layer keeps its newest T mod G tokens as S itself, in fp16 (the window).
// - When a layer's window reaches G tokens, their delta against the reconstruction of the layer
//   below, D_l = S_l - A_{l-1} (A_{l-1} final: the layer below flushed the same block earlier in
//   the same step, as the model walks layers in order), is quantized per channel over the G
//   tokens, and A_l = A_{l-1} + deq(D_l). Deltas are only ever taken against final
//   reconstructions, so as in the per-token variant the error does not accumulate with depth.
// - Reading layer l's past: the blocks through the running sum of deltas, the window as fp16 S
//   (fp16_window false: as deltas quantized per channel as a partial block, window_quantized);
//   for the residual stream, then the layer's input norm.
// - Sliding-window layers: "the layer below" is the previous layer of the chain (cl_chains),
//   each chain with its own running sums; after the step's last layer a sliding layer forgets
//   the blocks that lie wholly before its window.
#include "engine/cache/xquant_cl_channel.h"

#include <stdexcept>
#include <vector>

#include "engine/cache/quantized_rows.h"
#include "engine/cache/thread_scratch.h"
#include "engine/cache/x_attention.h"
#include "engine/cache/xquant_cl_chain.h"
#include "engine/cache/xquant_cl_rows.h"
#include "kernels/cpu/half.h"

namespace xq {
namespace {

class CLChannelSequence : public SequenceCache {
 public:
  CLChannelSequence(const ModelConfig& cfg, const KvProjector& proj, const XQuantCLOptions& opts,
                    std::shared_ptr<const ClPlan> plan)
      : cfg_(cfg),
        proj_(proj),
        opts_(opts),
        plan_(std::move(plan)),
        prev_(plan_->prev),
        win_(cfg.num_layers) {
    for (int l = 0; l < cfg.num_layers; ++l)
      q_.emplace_back(cfg.hidden_size, plan_->basis(l), plan_->bits[l], opts.group);
  }

  void attend(const LayerAttnInput& in) override {
    AttentionScratch& s = thread_scratch();
    const int l = in.layer, past = rows(l);
    if (in.start_pos != past) {
      throw std::invalid_argument("xquant-cl cache: layer " + std::to_string(l) + " holds " +
                                  std::to_string(past) + " tokens, input starts at " +
                                  std::to_string(in.start_pos));
    }
    const int hidden = cfg_.hidden_size;
    const float* src = cl_source(in, opts_.residual);
    const int lo = window_start(cfg_, l, past);
    const float* xs = cl_past_inputs(proj_, l, reconstruct_past(l, past, lo), lo, past, hidden,
                                     opts_.residual, s.xs);
    attend_over_inputs(cfg_, proj_, in, xs, opts_.fold_values, s.k, s.v);
    const size_t old = win_[l].size(), m = static_cast<size_t>(in.n) * hidden;
    win_[l].resize(old + m);
    to_window(src, win_[l].data() + old, m);
    while (window_rows(l) >= opts_.group) flush_block(l);
    if (l == cfg_.num_layers - 1) {  // the step's last layer
      for (int m = 0; m < cfg_.num_layers; ++m)
        q_[m].drop_before(window_start(cfg_, m, past + in.n));
      // The running sums are rebuilt at the next step's first layer anyway: free them rather
      // than keep a context-sized buffer per sequence between steps.
      for (Chain& c : chains_) c.past = RunningSum{};
    }
  }

  int num_tokens() const override { return rows(cfg_.num_layers - 1); }

  void truncate(int n) override {
    AttentionScratch& s = thread_scratch();
    check_truncate(cfg_, n, num_tokens());
    const int g = opts_.group, keep = n / g * g;
    const size_t h = cfg_.hidden_size;
    // Cut blocks give their kept rows back to the window as reconstructed X, computed for every
    // layer before any layer's blocks go.
    std::vector<std::vector<float>> back(cfg_.num_layers);
    for (int l = 0; l < cfg_.num_layers; ++l) {
      if (rows(l) > n && n < q_[l].rows()) chain_sum(q_, prev_, l, keep, n, h, back[l], s.tmp);
    }
    for (int l = 0; l < cfg_.num_layers; ++l) {
      if (rows(l) <= n) continue;
      if (n >= q_[l].rows()) {
        win_[l].resize((n - q_[l].rows()) * h);
        continue;
      }
      q_[l].truncate(keep);
      win_[l].resize(back[l].size());
      to_window(back[l].data(), win_[l].data(), back[l].size());
    }
    for (Chain& c : chains_) c.past.layer = c.blk_layer = -1;
  }

  size_t bytes_used() const override {
    size_t b = 0;
    for (int l = 0; l < cfg_.num_layers; ++l)
      b += q_[l].bytes() + cl_window_value_bytes(opts_) * win_[l].size();
    return b;
  }

 private:
  // The window keeps X as fp16; the residual stream in fp32, since Gemma 3's carries values past
  // fp16's range (1e5 in one channel of the 270M model), which only its deltas stay within.
  void to_window(const float* in, float* out, size_t n) const {
    if (opts_.residual) {
      std::copy(in, in + n, out);
    } else {
      for (size_t i = 0; i < n; ++i) out[i] = half_to_float(float_to_half(in[i]));
    }
  }
  int window_rows(int l) const { return static_cast<int>(win_[l].size() / cfg_.hidden_size); }
  int rows(int l) const { return q_.at(l).rows() + window_rows(l); }

  // A chain's running sums (scratch).
  struct Chain {
    RunningSum past;             // A of the past's quantized rows in the window
    std::vector<float> blk_acc;  // A of the chain's last flushed block
    int blk_layer = -1, blk_row = 0;
  };
  Chain& chain(int l) { return chains_[cfg_.sliding_window > 0 && cfg_.is_sliding(l) ? 1 : 0]; }

  // The chain's past rows [lo, past) = A_l at their row index: blocks as the running sum of
  // deltas (one add per layer when the chain's layers come in order), window rows as their S.
  const std::vector<float>& reconstruct_past(int l, int past, int lo) {
    AttentionScratch& s = thread_scratch();
    RunningSum& r = chain(l).past;
    const size_t h = cfg_.hidden_size;
    const int qrows = q_[l].rows();
    r.rows.resize(static_cast<size_t>(past) * h);
    advance_running_sum(q_, prev_, l, std::min(lo, qrows), qrows, cfg_.hidden_size, r, s.tmp,
                        s.tmp2);
    if (opts_.fp16_window) {
      std::copy(win_[l].begin(), win_[l].begin() + (past - qrows) * h, r.rows.begin() + qrows * h);
    } else if (past > qrows) {
      const std::vector<float> a = window_quantized(l, qrows, past);
      std::copy(a.begin(), a.end(), r.rows.begin() + qrows * h);
    }
    return r.rows;
  }

  // Without the fp16 window: A_l of window rows [begin, end) as if their unfilled block were
  // quantized now. Down l's chain from its base, a layer whose block is already flushed (earlier
  // in this step) gives its stored delta, the others the delta of their S against the sum so
  // far, quantized per channel over these rows as one partial block (as ChannelQuantRows reads
  // an unfilled block with fp16_tail false). Blocks are G-aligned in every layer, so a layer
  // holds the rows either all flushed or all in its window.
  std::vector<float> window_quantized(int l, int begin, int end) {
    const int n = end - begin, h = cfg_.hidden_size;
    std::vector<int> chain;
    for (int m = l; m >= 0; m = prev_[m]) chain.push_back(m);
    std::vector<float> acc(static_cast<size_t>(n) * h, 0.0f), d(acc.size());
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      const int m = *it;
      if (q_[m].rows() >= end) {
        q_[m].read(begin, end, d.data());
      } else {
        const size_t off = static_cast<size_t>(begin - q_[m].rows()) * h;
        for (size_t i = 0; i < d.size(); ++i) d[i] = win_[m][off + i] - acc[i];
        ClRows<ChannelQuantRows> block(h, plan_->basis(m), plan_->bits[m], n);
        block.append(d.data(), n);
        block.read(0, n, d.data());
      }
      for (size_t i = 0; i < acc.size(); ++i) acc[i] += d[i];
    }
    return acc;
  }

  // Quantizes the first G window rows of layer l as a block of deltas against A_p, p the
  // previous layer of l's chain.
  void flush_block(int l) {
    AttentionScratch& s = thread_scratch();
    Chain& c = chain(l);
    const int g = opts_.group, q0 = q_[l].rows(), p = prev_[l];
    const size_t n = static_cast<size_t>(g) * cfg_.hidden_size;
    std::vector<float> x(n), below;
    std::copy(win_[l].begin(), win_[l].begin() + n, x.begin());
    if (p >= 0) {
      if (c.blk_layer == p && c.blk_row == q0) {
        below.swap(c.blk_acc);
      } else {
        chain_sum(q_, prev_, p, q0, q0 + g, cfg_.hidden_size, below, s.tmp);
      }
      for (size_t i = 0; i < n; ++i) x[i] -= below[i];
    }
    q_[l].append(x.data(), g);
    q_[l].read(q0, q0 + g, x.data());
    if (p >= 0) {
      for (size_t i = 0; i < n; ++i) x[i] += below[i];
    }
    c.blk_acc.swap(x);  // A_l of this block, for the chain's next layer
    c.blk_layer = l, c.blk_row = q0;
    win_[l].erase(win_[l].begin(), win_[l].begin() + n);
  }

  ModelConfig cfg_;
  const KvProjector& proj_;
  XQuantCLOptions opts_;
  std::shared_ptr<const ClPlan> plan_;
  std::vector<int> prev_;                    // plan_->prev
  std::vector<ClRows<ChannelQuantRows>> q_;  // per layer: blocks of a base's S, or of deltas
  std::vector<std::vector<float>> win_;      // per layer: the newest S rows (fp16 values for X)
  Chain chains_[2];                          // global layers, sliding layers
};

}  // namespace

std::unique_ptr<SequenceCache> new_cl_channel_sequence(const ModelConfig& cfg,
                                                       const KvProjector& proj,
                                                       const XQuantCLOptions& opts,
                                                       std::shared_ptr<const ClPlan> plan) {
  return std::make_unique<CLChannelSequence>(cfg, proj, opts, std::move(plan));
}

}  // namespace xq
