// The paper (XQuant, arXiv 2508.10395, the GQA section) takes the SVD of each layer's Wk and Wv
// offline and caches X U_k and X U_v, as wide as the KV width, instead of X; K and V come back
// as (X U)(S V^T). With our row-major [kv_dim, hidden] weights that U is the V^T computed here.
// Rebuilding K through the projector's keys() after lifting the latent back to X space
// (x~ = (X U) U^T) is the same product and keeps bias, k-norm and RoPE in one place.
#include "engine/cache/xquant_latent.h"

#include <lapacke.h>

#include <algorithm>
#include <string>

namespace xq {

std::vector<float> row_space_basis(const float* w, int rows, int cols) {
  std::vector<float> a(w, w + static_cast<size_t>(rows) * cols);
  std::vector<float> s(rows), u(static_cast<size_t>(rows) * rows);
  std::vector<float> vt(static_cast<size_t>(rows) * cols);
  const lapack_int info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', rows, cols, a.data(), cols,
                                         s.data(), u.data(), rows, vt.data(), cols);
  if (info != 0) {
    throw ConfigError("xquant latent: SVD of a " + std::to_string(rows) + "x" +
                      std::to_string(cols) + " weight failed (LAPACKE_sgesdd info " +
                      std::to_string(info) + ")");
  }
  orient_rows(vt.data(), rows, cols);
  return vt;
}

std::vector<float> orient_rows(float* m, int rows, int cols) {
  std::vector<float> signs(rows, 1.0f);
  for (int r = 0; r < rows; ++r) {
    float* row = m + static_cast<size_t>(r) * cols;
    double sum = 0;
    for (int c = 0; c < cols; ++c) sum += row[c];
    if (sum >= 0) continue;
    signs[r] = -1.0f;
    for (int c = 0; c < cols; ++c) row[c] = -row[c];
  }
  return signs;
}

namespace {

void check_exposes(const KvProjector& proj, int l) {
  if (proj.k_weight(l) == nullptr || proj.v_weight(l) == nullptr) {
    throw ConfigError("xquant latent: the model does not expose Wk/Wv of layer " +
                      std::to_string(l) + " (KvProjector::k_weight/v_weight)");
  }
}

}  // namespace

std::vector<std::vector<float>> kv_row_space_bases(const ModelConfig& cfg,
                                                   const KvProjector& proj) {
  const int kv = cfg.kv_dim(), hidden = cfg.hidden_size;
  if (2 * kv > hidden) {
    throw ConfigError("xquant-cl latent: 2 kv_dim = " + std::to_string(2 * kv) +
                      " exceeds hidden_size " + std::to_string(hidden) +
                      "; the latent delta would be wider than X (an MHA model: use X deltas)");
  }
  std::vector<std::vector<float>> bases;
  std::vector<float> wkv(static_cast<size_t>(2 * kv) * hidden);
  for (int l = 0; l < cfg.num_layers; ++l) {
    check_exposes(proj, l);
    const size_t half = static_cast<size_t>(kv) * hidden;
    std::copy(proj.k_weight(l), proj.k_weight(l) + half, wkv.begin());
    std::copy(proj.v_weight(l), proj.v_weight(l) + half, wkv.begin() + half);
    bases.push_back(row_space_basis(wkv.data(), 2 * kv, hidden));
  }
  return bases;
}

LatentBasis compute_latent_basis(const ModelConfig& cfg, const KvProjector& proj) {
  const int kv = cfg.kv_dim(), hidden = cfg.hidden_size;
  if (kv > hidden) {
    throw ConfigError("xquant latent: kv_dim " + std::to_string(kv) + " exceeds hidden_size " +
                      std::to_string(hidden) + "; the latent would be wider than X");
  }
  LatentBasis b;
  b.rank = kv;
  for (int l = 0; l < cfg.num_layers; ++l) {
    check_exposes(proj, l);
    const float* wk = proj.k_weight(l);
    const float* wv = proj.v_weight(l);
    b.k.push_back(row_space_basis(wk, kv, hidden));
    b.v.push_back(row_space_basis(wv, kv, hidden));
  }
  return b;
}

}  // namespace xq
