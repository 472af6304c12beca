#include "engine/cache/x_attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/cache/layer_attention.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/parallel.h"

namespace xq {

void lift_rows(const float* z, int rows, int width, const float* basis, int hidden, float* out) {
  if (rows <= 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hidden, width, 1.0f, z, width, basis,
              hidden, 0.0f, out, hidden);
}

void project_rows(const float* x, int rows, int hidden, const float* basis, int width, float* z) {
  if (rows <= 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, width, hidden, 1.0f, x, hidden, basis,
              hidden, 0.0f, z, width);
}

void remat_keys(const KvProjector& proj, int layer, const float* x, int hidden, int lo, int past,
                int kv_dim, float* k) {
  if (past <= lo) return;
  std::vector<int> pos(past - lo);
  std::iota(pos.begin(), pos.end(), lo);
  proj.keys(layer, x + static_cast<size_t>(lo) * hidden, past - lo, pos.data(),
            k + static_cast<size_t>(lo) * kv_dim);
}

void folded_attention(const ModelConfig& cfg, const KvProjector& proj, const LayerAttnInput& in,
                      const float* k, const float* xs, int width, const float* lift) {
  const int hd = cfg.head_dim, heads = cfg.num_heads, kv_dim = cfg.kv_dim();
  const int group = heads / cfg.num_kv_heads, past = in.start_pos, rows = in.n * heads;
  const float scale = attention_scale(cfg);
  // Per (token, query head): the softmax-weighted mean of the past's cached rows and the weight
  // the past carries; the new tokens' values are summed straight into the output.
  std::vector<float> mean(static_cast<size_t>(rows) * width, 0.0f), weight(rows, 0.0f);
  const int min_chunk = std::max(1, 65536 / std::max(1, (past + in.n) * (hd + width)));
  parallel_for(rows, hardware_threads(), min_chunk, [&](int begin, int end) {
    std::vector<float> p(past + in.n);
    for (int t = begin; t < end; ++t) {
      const int i = t / heads, h = t % heads, g = h / group, pos = past + i;
      const int lo = window_start(cfg, in.layer, pos), len = pos + 1 - lo;
      const size_t qo = static_cast<size_t>(i) * heads * hd + h * hd;
      attn_scores(in.q + qo, k + static_cast<size_t>(lo) * kv_dim + g * hd, kv_dim, len, hd, scale,
                  cfg.attn_logit_softcap, p.data());
      const float mx = *std::max_element(p.begin(), p.begin() + len);
      double sum = 0;
      for (int j = 0; j < len; ++j) sum += (p[j] = std::exp(p[j] - mx));
      const float inv = static_cast<float>(1.0 / sum);
      float* o = in.out + qo;
      std::fill(o, o + hd, 0.0f);
      float* m = mean.data() + static_cast<size_t>(t) * width;
      float w = 0;
      for (int j = 0; j < len; ++j) {
        const float pj = p[j] * inv;
        const int r = lo + j;
        if (r < past) {
          const float* x = xs + static_cast<size_t>(r) * width;
          for (int c = 0; c < width; ++c) m[c] += pj * x[c];
          w += pj;
        } else {
          const float* v = in.v + static_cast<size_t>(r - past) * kv_dim + g * hd;
          for (int c = 0; c < hd; ++c) o[c] += pj * v[c];
        }
      }
      if (w > 0) {
        for (int c = 0; c < width; ++c) m[c] /= w;
      }
      weight[t] = w;
    }
  });
  if (past == 0) return;
  // V is affine in x: values(mean) * w = (sum_j p_j x_j) Wv + w b, for every head at once.
  const int hidden = cfg.hidden_size;
  std::vector<float> lifted;
  const float* xin = mean.data();
  if (lift != nullptr) {
    lifted.resize(static_cast<size_t>(rows) * hidden);
    lift_rows(mean.data(), rows, width, lift, hidden, lifted.data());
    xin = lifted.data();
  }
  std::vector<float> v(static_cast<size_t>(rows) * kv_dim);
  proj.values(in.layer, xin, rows, v.data());
  for (int t = 0; t < rows; ++t) {
    if (weight[t] <= 0) continue;
    const int i = t / heads, h = t % heads, g = h / group;
    float* o = in.out + static_cast<size_t>(i) * heads * hd + h * hd;
    const float* vh = v.data() + static_cast<size_t>(t) * kv_dim + g * hd;
    for (int c = 0; c < hd; ++c) o[c] += weight[t] * vh[c];
  }
}

void attend_over_inputs(const ModelConfig& cfg, const KvProjector& proj, const LayerAttnInput& in,
                        const float* xs, bool fold, std::vector<float>& k, std::vector<float>& v) {
  const int hidden = cfg.hidden_size, kv_dim = cfg.kv_dim(), past = in.start_pos;
  const int lo = window_start(cfg, in.layer, past);
  const size_t rows = static_cast<size_t>(past + in.n);
  k.resize(rows * kv_dim);
  remat_keys(proj, in.layer, xs, hidden, lo, past, kv_dim, k.data());
  std::copy(in.k, in.k + static_cast<size_t>(in.n) * kv_dim, k.begin() + past * kv_dim);
  if (fold) {
    folded_attention(cfg, proj, in, k.data(), xs, hidden, nullptr);
  } else {
    v.resize(rows * kv_dim);
    remat_attention(cfg, proj, in, xs, k.data(), v.data());
  }
}

void remat_attention(const ModelConfig& cfg, const KvProjector& proj, const LayerAttnInput& in,
                     const float* x, float* k, float* v) {
  const int kv_dim = cfg.kv_dim(), past = in.start_pos;
  const int lo = window_start(cfg, in.layer, past);
  if (past > lo) {
    proj.values(in.layer, x + static_cast<size_t>(lo) * cfg.hidden_size, past - lo,
                v + static_cast<size_t>(lo) * kv_dim);
  }
  std::copy(in.v, in.v + static_cast<size_t>(in.n) * kv_dim,
            v + static_cast<size_t>(past) * kv_dim);
  causal_attention(cfg, in.layer, in.q, in.n, in.start_pos, k, v, in.out);
}

}  // namespace xq
