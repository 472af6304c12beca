// The GQA latent's bases from the GPU (cuSOLVER, engine/cuda/latent_svd.h) against the host's
// LAPACK SVD, the CPU engine's reference: the same projector onto W's row space, the same
// singular vectors row by row (order and sign) where singular values are well apart, an exact
// rebuild of K = X W^T through the latent, rank-deficient weights, and the CUDA model's load
// using the GPU's bases. Skips without a GPU.
#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/cache/xquant_latent.h"
#include "engine/cuda/cuda_weights.h"
#include "engine/cuda/latent_svd.h"
#include "engine/model/layer_weights.h"
#include "tests/unit/cuda_test_support.h"
#include "tests/unit/engine_random_model.h"

namespace xq::cuda::test {
namespace {

// C [m, n] = A [m, k] B^T (B [n, k]), row-major, in double.
std::vector<double> mul_nt(const std::vector<double>& a, const std::vector<double>& b, int m, int n,
                           int k) {
  std::vector<double> c(static_cast<size_t>(m) * n);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0, a.data(), k, b.data(), k, 0.0,
              c.data(), n);
  return c;
}

std::vector<double> to_double(const float* p, size_t n) { return std::vector<double>(p, p + n); }

// max |B B^T - I| over the first `rows` rows of B [*, cols].
double orthonormality_error(const std::vector<float>& b, int rows, int cols) {
  const std::vector<double> d = to_double(b.data(), static_cast<size_t>(rows) * cols);
  const std::vector<double> g = mul_nt(d, d, rows, rows, cols);
  double worst = 0;
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < rows; ++j)
      worst = std::max(worst, std::abs(g[static_cast<size_t>(i) * rows + j] - (i == j)));
  return worst;
}

// ||P_a - P_b||_F / ||P_b||_F for the projectors on the spans of the first `rows` (orthonormal)
// rows of a and b: ||P_a - P_b||_F^2 = 2 ||a - (a b^T) b||_F^2 for equal ranks.
double projector_distance(const std::vector<float>& a, const std::vector<float>& b, int rows,
                          int cols) {
  const size_t n = static_cast<size_t>(rows) * cols;
  const std::vector<double> da = to_double(a.data(), n), db = to_double(b.data(), n);
  const std::vector<double> t = mul_nt(da, db, rows, rows, cols);  // a b^T
  std::vector<double> r(n);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols, rows, 1.0, t.data(), rows,
              db.data(), cols, 0.0, r.data(), cols);
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += (da[i] - r[i]) * (da[i] - r[i]);
  return std::sqrt(2.0 * s / rows);
}

// ||(X U^T)(W U^T)^T - X W^T|| / ||X W^T|| over random X: K rebuilt from the latent.
double rebuild_error(const LatentSide& side, const std::vector<float>& w, int rows, int cols) {
  const int n = 16;
  const std::vector<double> x =
      to_double(gaussian(static_cast<size_t>(n) * cols, 5).data(), static_cast<size_t>(n) * cols);
  const std::vector<double> dw = to_double(w.data(), w.size());
  const std::vector<double> k = mul_nt(x, dw, n, rows, cols);
  const std::vector<double> lat =
      mul_nt(x, to_double(side.basis.data(), side.basis.size()), n, rows, cols);
  const std::vector<double> k2 =
      mul_nt(lat, to_double(side.folded.data(), side.folded.size()), n, rows, rows);
  return rel_err(k2, k);
}

LatentSide gpu_side(const std::vector<float>& w, int rows, int cols, double* seconds = nullptr) {
  GpuLatentSvd svd(rows, cols);
  const auto t0 = std::chrono::steady_clock::now();
  LatentSide s = svd.solve(w.data());
  if (seconds)
    *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

using LatentSvdTest = GpuTest;

// Random weights, up to the Llama-3-8B shape (kv_dim 1024, hidden 4096): the span and the
// rebuild match the host's; the host's time against the GPU's is printed.
TEST_F(LatentSvdTest, RandomWeightsSpanTheHostBasisSpace) {
  const std::vector<std::pair<int, int>> shapes = {{32, 128}, {256, 1024}, {1024, 4096}};
  for (const auto& [rows, cols] : shapes) {
    const std::vector<float> w = gaussian(static_cast<size_t>(rows) * cols, rows + cols);
    double gpu_s = 0;
    const LatentSide g = gpu_side(w, rows, cols, &gpu_s);
    const auto t0 = std::chrono::steady_clock::now();
    const LatentSide h = host_latent_side(w.data(), rows, cols);
    const double host_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_EQ(g.basis.size(), h.basis.size());
    ASSERT_EQ(g.folded.size(), h.folded.size());
    const double orth = orthonormality_error(g.basis, rows, cols);
    const double proj = projector_distance(g.basis, h.basis, rows, cols);
    const double rebuild = rebuild_error(g, w, rows, cols);
    std::printf("%4d x %4d: GPU %.3f s, host %.3f s; |UU^T-I| %.2g, projector %.2g, rebuild %.2g\n",
                rows, cols, gpu_s, host_s, orth, proj, rebuild);
    EXPECT_LT(orth, 1e-5) << rows << "x" << cols;
    EXPECT_LT(proj, 1e-4) << rows << "x" << cols;
    EXPECT_LT(rebuild, 1e-5) << rows << "x" << cols;
    EXPECT_LT(rebuild_error(h, w, rows, cols), 1e-5) << "host " << rows << "x" << cols;
  }
}

// Singular values well apart (W = A diag(s) B, s from 4 down to 0.4): each basis row and each
// column of W U^T equals the host's, in order and sign.
TEST_F(LatentSvdTest, SeparatedSingularValuesGiveTheHostsVectors) {
  const int rows = 64, cols = 256;
  const std::vector<float> a = row_space_basis(gaussian(rows * rows, 1).data(), rows, rows);
  const std::vector<float> b = row_space_basis(gaussian(rows * cols, 2).data(), rows, cols);
  std::vector<float> as(a);  // A diag(s)
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < rows; ++j) as[i * rows + j] *= 4.0f * std::pow(0.1f, j / (rows - 1.0f));
  std::vector<float> w(static_cast<size_t>(rows) * cols, 0.0f);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols, rows, 1.0f, as.data(), rows,
              b.data(), cols, 0.0f, w.data(), cols);
  const LatentSide g = gpu_side(w, rows, cols);
  const LatentSide h = host_latent_side(w.data(), rows, cols);
  double basis_diff = 0, fold_diff = 0;
  for (size_t i = 0; i < g.basis.size(); ++i)
    basis_diff = std::max(basis_diff, double(std::abs(g.basis[i] - h.basis[i])));
  for (size_t i = 0; i < g.folded.size(); ++i)
    fold_diff = std::max(fold_diff, double(std::abs(g.folded[i] - h.folded[i])));
  std::printf("max |U_gpu - U_host| %.2g, max |WU^T_gpu - WU^T_host| %.2g\n", basis_diff,
              fold_diff);
  // Entries are ~0.06 (basis) and ~0.5 (W U^T): a flipped or swapped row would differ by ~0.1.
  EXPECT_LT(basis_diff, 5e-4);
  EXPECT_LT(fold_diff, 1e-3);
}

// Rank-deficient weights (a product through 40 dimensions; 32 zero rows): the basis is still
// orthonormal and full, its first `rank` rows span W's row space as the host's do, and K
// rebuilds exactly.
TEST_F(LatentSvdTest, RankDeficientWeightsStillGiveAFullOrthonormalBasis) {
  const int rows = 128, cols = 512, rank = 40;
  std::vector<float> low(static_cast<size_t>(rows) * cols);
  const std::vector<float> l = gaussian(rows * rank, 3), r = gaussian(rank * cols, 4);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols, rank, 1.0f, l.data(), rank,
              r.data(), cols, 0.0f, low.data(), cols);
  std::vector<float> zero_rows = gaussian(static_cast<size_t>(rows) * cols, 6);
  std::fill(zero_rows.begin() + static_cast<size_t>(rows - 32) * cols, zero_rows.end(), 0.0f);
  const std::vector<std::pair<const char*, std::pair<std::vector<float>*, int>>> cases = {
      {"rank 40", {&low, rank}}, {"32 zero rows", {&zero_rows, rows - 32}}};
  for (const auto& [name, c] : cases) {
    const std::vector<float>& w = *c.first;
    const LatentSide g = gpu_side(w, rows, cols);
    const LatentSide h = host_latent_side(w.data(), rows, cols);
    const double orth = orthonormality_error(g.basis, rows, cols);
    const double proj = projector_distance(g.basis, h.basis, c.second, cols);
    const double rebuild = rebuild_error(g, w, rows, cols);
    std::printf("%s: |UU^T-I| %.2g, projector of the first %d rows %.2g, rebuild %.2g\n", name,
                orth, c.second, proj, rebuild);
    EXPECT_LT(orth, 1e-5) << name;
    EXPECT_LT(proj, 1e-4) << name;
    EXPECT_LT(rebuild, 1e-5) << name;
  }
}

TEST_F(LatentSvdTest, RefusesAWeightWiderThanItIsLong) {
  EXPECT_THROW({ GpuLatentSvd svd(64, 32); }, CudaError);
}

// The CUDA model's load computes its latent on the GPU, and the bases it uploads are the host's
// (to bf16); XQ_CUDA_HOST_SVD=1 takes the host path.
TEST_F(LatentSvdTest, TheCudaModelsLoadUsesTheGpuBases) {
  ModelConfig cfg = tiny_config(Arch::Llama);
  cfg.hidden_size = 128, cfg.num_heads = 4, cfg.num_kv_heads = 1, cfg.head_dim = 32;
  const MemoryWeights src = random_weights(cfg, 11, /*bf16=*/true, 0.1f);
  const int kv = cfg.kv_dim(), hidden = cfg.hidden_size;
  const CudaWeights w = upload_weights(cfg, src, true);
  EXPECT_EQ(w.latent_svd, "gpu");
  for (int l = 0; l < cfg.num_layers; ++l) {
    const LayerWeights L = load_layer_weights(cfg, src, l);
    std::vector<float> want = host_latent_side(L.wk.data(), kv, hidden).basis;
    const std::vector<float> v = host_latent_side(L.wv.data(), kv, hidden).basis;
    want.insert(want.end(), v.begin(), v.end());
    std::vector<bf16> got(want.size());
    check(cudaMemcpy(got.data(), w.layers[l].u_cat.get(), got.size() * sizeof(bf16),
                     cudaMemcpyDeviceToHost),
          "download u_cat");
    const std::vector<float> gotf = bf16_to_floats(got);
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i)
      worst = std::max(worst, double(std::abs(gotf[i] - want[i])));
    EXPECT_LT(worst, 4e-3) << "layer " << l;  // bf16 of entries below 1
  }
  setenv("XQ_CUDA_HOST_SVD", "1", 1);
  const CudaWeights host = upload_weights(cfg, src, true);
  unsetenv("XQ_CUDA_HOST_SVD");
  EXPECT_EQ(host.latent_svd, "host");
  EXPECT_EQ(upload_weights(cfg, src, false).latent_svd, "");
}

}  // namespace
}  // namespace xq::cuda::test
