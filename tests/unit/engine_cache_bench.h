// The cache-format test bench: small MHA / GQA / sliding-window model shapes, a real projector
// (random Wk/Wv, biases, k-norm, RoPE), a workload of layer inputs, exact fp32 attention to
// compare against, and the formats by short name. Shared by the engine cache unit tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/cache/cache_format.h"
#include "engine/cache/kivi_cache.h"
#include "engine/cache/kv16_cache.h"
#include "engine/cache/layer_attention.h"
#include "engine/cache/xquant_cache.h"
#include "engine/cache/xquant_cl_cache.h"

namespace xq::cache_test {

inline constexpr int kGroup = 16;

inline ModelConfig make_config(const std::string& kind) {
  ModelConfig c;
  c.num_layers = 3;
  c.head_dim = 16;
  if (kind == "mha") {
    c.hidden_size = 64, c.num_heads = 4, c.num_kv_heads = 4;
  } else {  // gqa, sliding: kv_dim 32 against hidden 128, so the latent is the smaller cache
    c.hidden_size = 128, c.num_heads = 8, c.num_kv_heads = 2;
  }
  if (kind == "sliding") {
    c.sliding_window = 20;
    c.layer_is_sliding = {true, false, true};
    c.attn_logit_softcap = 30.0f;
    c.query_pre_attn_scalar = 24.0f;
  }
  return c;
}

// K = rope(norm(x Wk^T + bk)), V = x Wv^T + bv; k-norm only in the sliding (Gemma-like) config.
// The input norm is Gemma's RMSNorm with (1 + w), w different in every layer.
class TestProjector : public KvProjector {
 public:
  TestProjector(const ModelConfig& cfg, bool k_norm) : cfg_(cfg), k_norm_(k_norm) {
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.0f, 1.0f / std::sqrt(float(cfg.hidden_size)));
    std::normal_distribution<float> nw(0.0f, 0.2f);
    const size_t w = static_cast<size_t>(cfg.kv_dim()) * cfg.hidden_size;
    for (int l = 0; l < cfg.num_layers; ++l) {
      wk_.emplace_back(w), wv_.emplace_back(w);
      bk_.emplace_back(cfg.kv_dim()), bv_.emplace_back(cfg.kv_dim());
      wn_.emplace_back(cfg.hidden_size);
      for (auto& x : wk_.back()) x = nd(rng);
      for (auto& x : wv_.back()) x = nd(rng);
      for (auto& x : bk_.back()) x = 5 * nd(rng);
      for (auto& x : bv_.back()) x = 5 * nd(rng);
      for (auto& x : wn_.back()) x = nw(rng);
    }
  }
  void norm_input(int layer, const float* r, int n, float* x) const override {
    const int h = cfg_.hidden_size;
    for (int i = 0; i < n; ++i) {
      double ss = 0;
      for (int c = 0; c < h; ++c) ss += double(r[i * h + c]) * r[i * h + c];
      const float inv = 1.0f / std::sqrt(float(ss / h) + 1e-6f);
      for (int c = 0; c < h; ++c) x[i * h + c] = r[i * h + c] * inv * (1.0f + wn_[layer][c]);
    }
  }
  void keys(int layer, const float* x, int n, const int* pos, float* k) const override {
    project(wk_[layer], bk_[layer], x, n, k);
    const int hd = cfg_.head_dim, kv = cfg_.kv_dim();
    for (int i = 0; i < n; ++i) {
      for (int h = 0; h < cfg_.num_kv_heads; ++h) {
        float* r = k + static_cast<size_t>(i) * kv + h * hd;
        if (k_norm_) {
          double ss = 0;
          for (int c = 0; c < hd; ++c) ss += r[c] * r[c];
          const float inv = 1.0f / std::sqrt(float(ss / hd) + 1e-6f);
          for (int c = 0; c < hd; ++c) r[c] *= inv * (1.0f + 0.1f * c);
        }
        for (int c = 0; c < hd / 2; ++c) {  // rotate-half RoPE
          const double ang = pos[i] * std::pow(10000.0, -2.0 * c / hd);
          const float cs = std::cos(ang), sn = std::sin(ang);
          const float a = r[c], b = r[c + hd / 2];
          r[c] = a * cs - b * sn;
          r[c + hd / 2] = a * sn + b * cs;
        }
      }
    }
  }
  void values(int layer, const float* x, int n, float* v) const override {
    project(wv_[layer], bv_[layer], x, n, v);
  }
  const float* k_weight(int layer) const override { return wk_[layer].data(); }
  const float* v_weight(int layer) const override { return wv_[layer].data(); }

 private:
  void project(const std::vector<float>& w, const std::vector<float>& b, const float* x, int n,
               float* y) const {
    const int in = cfg_.hidden_size, out = cfg_.kv_dim();
    for (int i = 0; i < n; ++i) {
      for (int o = 0; o < out; ++o) {
        double s = b[o];
        for (int c = 0; c < in; ++c) s += double(x[i * in + c]) * w[o * in + c];
        y[i * out + o] = static_cast<float>(s);
      }
    }
  }
  ModelConfig cfg_;
  bool k_norm_;
  std::vector<std::vector<float>> wk_, wv_, bk_, bv_, wn_;
};

// Inputs of every layer for T tokens: a residual stream R_l = R_{l-1} + noise (with one outlier
// channel), X_l = norm_input(l, R_l), random queries, and the exact K/V the model would pass.
struct Workload {
  int tokens;
  std::vector<std::vector<float>> r, x, q, k, v;  // per layer, [T, width]
  Workload(const ModelConfig& cfg, const KvProjector& proj, int t) : tokens(t) {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int h = cfg.hidden_size, qd = cfg.q_dim(), kv = cfg.kv_dim();
    std::vector<float> rl(static_cast<size_t>(t) * h), xl(rl.size());
    for (size_t i = 0; i < rl.size(); ++i) rl[i] = nd(rng) * (i % h == 3 ? 8.0f : 1.0f);
    std::vector<int> pos(t);
    for (int i = 0; i < t; ++i) pos[i] = i;
    for (int l = 0; l < cfg.num_layers; ++l) {
      if (l > 0) {
        for (auto& e : rl) e += 0.3f * nd(rng);
      }
      proj.norm_input(l, rl.data(), t, xl.data());
      r.push_back(rl);
      x.push_back(xl);
      q.emplace_back(static_cast<size_t>(t) * qd);
      for (auto& e : q.back()) e = 1.5f * nd(rng);
      k.emplace_back(static_cast<size_t>(t) * kv);
      v.emplace_back(static_cast<size_t>(t) * kv);
      proj.keys(l, xl.data(), t, pos.data(), k.back().data());
      proj.values(l, xl.data(), t, v.back().data());
    }
  }
};

using Outputs = std::vector<std::vector<float>>;  // per layer, [T, q_dim]

// Runs tokens [begin, end) through `seq` in chunks of `chunk`, writing their outputs.
inline void run(const ModelConfig& cfg, const Workload& w, SequenceCache& seq, int begin, int end,
                int chunk, Outputs& out) {
  const int h = cfg.hidden_size, qd = cfg.q_dim(), kv = cfg.kv_dim();
  out.resize(cfg.num_layers);
  for (auto& o : out) o.resize(static_cast<size_t>(w.tokens) * qd);
  for (int s = begin; s < end; s += chunk) {
    const int n = std::min(chunk, end - s);
    for (int l = 0; l < cfg.num_layers; ++l) {
      LayerAttnInput in;
      in.layer = l, in.n = n, in.start_pos = s;
      in.x = w.x[l].data() + static_cast<size_t>(s) * h;
      in.residual = w.r[l].data() + static_cast<size_t>(s) * h;
      in.q = w.q[l].data() + static_cast<size_t>(s) * qd;
      in.k = w.k[l].data() + static_cast<size_t>(s) * kv;
      in.v = w.v[l].data() + static_cast<size_t>(s) * kv;
      in.out = out[l].data() + static_cast<size_t>(s) * qd;
      seq.attend(in);
    }
  }
}

inline Outputs exact(const ModelConfig& cfg, const Workload& w) {
  Outputs out(cfg.num_layers);
  for (int l = 0; l < cfg.num_layers; ++l) {
    out[l].resize(static_cast<size_t>(w.tokens) * cfg.q_dim());
    causal_attention(cfg, l, w.q[l].data(), w.tokens, 0, w.k[l].data(), w.v[l].data(),
                     out[l].data());
  }
  return out;
}

// ||a - b|| / ||b|| over tokens [from, T) of every layer.
inline double rel_error(const ModelConfig& cfg, const Outputs& a, const Outputs& b, int from) {
  double num = 0, den = 0;
  for (size_t l = 0; l < a.size(); ++l) {
    for (size_t i = static_cast<size_t>(from) * cfg.q_dim(); i < a[l].size(); ++i) {
      num += std::pow(double(a[l][i]) - b[l][i], 2);
      den += std::pow(double(b[l][i]), 2);
    }
  }
  return std::sqrt(num / den);
}

// "fp16", "kivi", "xquant", "xquant-ch", "xquant-cl[-ch][-residual|-normed]", "latent" (K latent
// per channel), "latent-tok" (K latent per token).
inline std::unique_ptr<CacheFormat> make(const std::string& spec, const ModelConfig& cfg,
                                         const KvProjector& proj, int bits, bool fold = true) {
  if (spec == "fp16") return std::make_unique<Kv16Format>(cfg);
  if (spec == "kivi") return std::make_unique<KiviFormat>(cfg, bits, kGroup);
  if (spec.rfind("xquant-cl", 0) == 0) {  // xquant-cl[-ch][-residual|-normed], as the factory
    XQuantCLOptions o;
    o.bits = bits, o.group = kGroup, o.fold_values = fold;
    o.per_channel = spec.find("-ch") != std::string::npos;
    o.residual = spec.find("-residual") != std::string::npos ||
                 (spec.find("-normed") == std::string::npos && cl_default_residual(o.per_channel));
    return std::make_unique<XQuantCLFormat>(cfg, proj, o);
  }
  XQuantOptions o;
  o.bits = bits, o.group = kGroup, o.fold_values = fold;
  o.latent = spec == "latent" || spec == "latent-tok";
  o.latent_k_per_token = spec == "latent-tok";  // the K latent per token, like the V latent
  o.x_per_channel = spec == "xquant-ch";
  return std::make_unique<XQuantFormat>(cfg, proj, o);
}

struct Bench {
  ModelConfig cfg;
  TestProjector proj;
  Workload work;
  Outputs ref;
  explicit Bench(const std::string& kind, int tokens = 70)
      : cfg(make_config(kind)),
        proj(cfg, kind == "sliding"),
        work(cfg, proj, tokens),
        ref(exact(cfg, work)) {}
  Outputs decode(const CacheFormat& f, int chunk = 1) const {
    auto seq = f.new_sequence();
    Outputs out;
    run(cfg, work, *seq, 0, work.tokens, chunk, out);
    return out;
  }
};

inline constexpr const char* kKinds[] = {"mha", "gqa", "sliding"};

}  // namespace xq::cache_test
