#include "engine/model/cpu_model.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/parallel.h"
#include "engine/model/rope_freqs.h"
#include "kernels/cpu/rope.h"

namespace xq {
namespace {

const float* data_or_null(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

}  // namespace

CpuModel::CpuModel(const ModelConfig& cfg, const WeightSource& src, const CacheOptions& cache)
    : cfg_(cfg), w_(load_model_weights(cfg, src)) {
  rope_ = model_rope_freqs(cfg_);
  format_ = make_cache_format(cache, cfg_, *this);
}

void CpuModel::forward(std::span<const SeqInput> batch, std::vector<float>& logits) {
  int rows = 0;
  for (const SeqInput& s : batch) rows += static_cast<int>(s.tokens.size());
  logits.clear();
  if (rows == 0) return;
  embed(batch, rows);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    attention_block(l, batch, rows);
    mlp_block(l, rows);
  }
  output_logits(batch, logits);
}

void CpuModel::embed(std::span<const SeqInput> batch, int rows) {
  const int H = cfg_.hidden_size;
  s_.h.resize(static_cast<size_t>(rows) * H);
  s_.pos.resize(rows);
  // Gemma scales the embedding by sqrt(hidden) (in fp32 here; HF rounds the factor to the
  // weight dtype).
  const float scale = cfg_.arch == Arch::Gemma3 ? std::sqrt(static_cast<float>(H)) : 1.0f;
  int r = 0;
  for (const SeqInput& s : batch) {
    for (size_t i = 0; i < s.tokens.size(); ++i, ++r) {
      const int t = s.tokens[i];
      if (t < 0 || t >= cfg_.vocab_size) {
        throw std::invalid_argument("token id " + std::to_string(t) +
                                    " is outside the vocabulary (" +
                                    std::to_string(cfg_.vocab_size) + ")");
      }
      const float* e = w_.embed.data() + static_cast<size_t>(t) * H;
      for (int j = 0; j < H; ++j) s_.h[static_cast<size_t>(r) * H + j] = e[j] * scale;
      s_.pos[r] = s.start_pos + static_cast<int>(i);
    }
  }
}

void CpuModel::norm_and_rope(int layer, float* t, int rows, int heads,
                             const std::vector<float>& norm, const int* pos) const {
  const bool gemma = cfg_.arch == Arch::Gemma3;
  if (!norm.empty()) {
    rmsnorm(t, norm.data(), t, rows * heads, cfg_.head_dim, cfg_.rms_norm_eps, gemma);
  }
  rope_apply(t, rows, heads, cfg_.head_dim, static_cast<size_t>(heads) * cfg_.head_dim, pos,
             rope_.for_layer(cfg_, layer));
}

void CpuModel::attention_block(int l, std::span<const SeqInput> batch, int rows) {
  const LayerWeights& L = w_.layers[l];
  const int H = cfg_.hidden_size, Q = cfg_.q_dim(), KV = cfg_.kv_dim();
  const bool gemma = cfg_.arch == Arch::Gemma3;
  s_.x.resize(static_cast<size_t>(rows) * H);
  s_.q.resize(static_cast<size_t>(rows) * Q);
  s_.k.resize(static_cast<size_t>(rows) * KV);
  s_.v.resize(static_cast<size_t>(rows) * KV);
  s_.attn.resize(static_cast<size_t>(rows) * Q);
  s_.o.resize(static_cast<size_t>(rows) * H);

  // All new tokens of all sequences go through the projections as one matmul.
  norm_input(l, s_.h.data(), rows, s_.x.data());
  matmul_nt(s_.x.data(), L.wq.data(), data_or_null(L.bq), s_.q.data(), rows, H, Q);
  matmul_nt(s_.x.data(), L.wk.data(), data_or_null(L.bk), s_.k.data(), rows, H, KV);
  matmul_nt(s_.x.data(), L.wv.data(), data_or_null(L.bv), s_.v.data(), rows, H, KV);
  norm_and_rope(l, s_.q.data(), rows, cfg_.num_heads, L.q_norm, s_.pos.data());
  norm_and_rope(l, s_.k.data(), rows, cfg_.num_kv_heads, L.k_norm, s_.pos.data());

  // Each sequence's cache stores its state and attends; sequences are independent.
  std::vector<int> offset(batch.size() + 1, 0);
  for (size_t i = 0; i < batch.size(); ++i) {
    offset[i + 1] = offset[i] + static_cast<int>(batch[i].tokens.size());
  }
  const int threads = batch.size() > 1 ? hardware_threads() : 1;
  parallel_for(static_cast<int>(batch.size()), threads, 1, [&](int b, int e) {
    for (int i = b; i < e; ++i) {
      const SeqInput& s = batch[i];
      if (s.tokens.empty()) continue;
      const size_t r = offset[i];
      LayerAttnInput in;
      in.layer = l;
      in.n = static_cast<int>(s.tokens.size());
      in.start_pos = s.start_pos;
      in.x = s_.x.data() + r * H;
      in.residual = s_.h.data() + r * H;
      in.q = s_.q.data() + r * Q;
      in.k = s_.k.data() + r * KV;
      in.v = s_.v.data() + r * KV;
      in.out = s_.attn.data() + r * Q;
      s.cache->attend(in);
    }
  });

  matmul_nt(s_.attn.data(), L.wo.data(), data_or_null(L.bo), s_.o.data(), rows, Q, H);
  if (gemma)
    rmsnorm(s_.o.data(), L.post_attn_norm.data(), s_.o.data(), rows, H, cfg_.rms_norm_eps, true);
  add_inplace(s_.h.data(), s_.o.data(), s_.h.size());
}

void CpuModel::mlp_block(int l, int rows) {
  const LayerWeights& L = w_.layers[l];
  const int H = cfg_.hidden_size, I = cfg_.intermediate_size;
  const bool gemma = cfg_.arch == Arch::Gemma3;
  s_.gate.resize(static_cast<size_t>(rows) * I);
  s_.up.resize(static_cast<size_t>(rows) * I);
  rmsnorm(s_.h.data(), L.mlp_norm.data(), s_.x.data(), rows, H, cfg_.rms_norm_eps, gemma);
  matmul_nt(s_.x.data(), L.w_gate.data(), nullptr, s_.gate.data(), rows, H, I);
  matmul_nt(s_.x.data(), L.w_up.data(), nullptr, s_.up.data(), rows, H, I);
  if (gemma) {
    gelu_tanh_mul(s_.gate.data(), s_.up.data(), s_.gate.data(), s_.gate.size());
  } else {
    silu_mul(s_.gate.data(), s_.up.data(), s_.gate.data(), s_.gate.size());
  }
  matmul_nt(s_.gate.data(), L.w_down.data(), nullptr, s_.o.data(), rows, I, H);
  if (gemma)
    rmsnorm(s_.o.data(), L.post_mlp_norm.data(), s_.o.data(), rows, H, cfg_.rms_norm_eps, true);
  add_inplace(s_.h.data(), s_.o.data(), static_cast<size_t>(rows) * H);
}

void CpuModel::output_logits(std::span<const SeqInput> batch, std::vector<float>& logits) {
  const int H = cfg_.hidden_size, V = cfg_.vocab_size;
  // Only the rows whose logits are asked for go through the final norm and lm_head.
  const std::vector<int> pick = logit_rows(batch);
  const int m = static_cast<int>(pick.size());
  std::vector<float> x(static_cast<size_t>(m) * H);
  for (int i = 0; i < m; ++i) {
    std::copy_n(s_.h.data() + static_cast<size_t>(pick[i]) * H, H,
                x.data() + static_cast<size_t>(i) * H);
  }
  rmsnorm(x.data(), w_.final_norm.data(), x.data(), m, H, cfg_.rms_norm_eps,
          cfg_.arch == Arch::Gemma3);
  logits.resize(static_cast<size_t>(m) * V);
  const auto& head = w_.lm_head.empty() ? w_.embed : w_.lm_head;
  matmul_nt(x.data(), head.data(), nullptr, logits.data(), m, H, V);
  softcap(logits.data(), logits.size(), cfg_.final_logit_softcap);
}

void CpuModel::keys(int layer, const float* x, int n, const int* pos, float* k) const {
  const LayerWeights& L = w_.layers[layer];
  matmul_nt(x, L.wk.data(), data_or_null(L.bk), k, n, cfg_.hidden_size, cfg_.kv_dim());
  norm_and_rope(layer, k, n, cfg_.num_kv_heads, L.k_norm, pos);
}

void CpuModel::norm_input(int layer, const float* residual, int n, float* x) const {
  rmsnorm(residual, w_.layers[layer].attn_norm.data(), x, n, cfg_.hidden_size, cfg_.rms_norm_eps,
          cfg_.arch == Arch::Gemma3);
}

void CpuModel::values(int layer, const float* x, int n, float* v) const {
  const LayerWeights& L = w_.layers[layer];
  matmul_nt(x, L.wv.data(), data_or_null(L.bv), v, n, cfg_.hidden_size, cfg_.kv_dim());
}

}  // namespace xq
