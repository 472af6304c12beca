// cuBLAS and cuSOLVER are column-major: W [rows, cols] row-major is, as it lies in memory, the
// column-major A = W^T (cols x rows, lda = cols), and a column-major Q (cols x rows) holds the
// basis rows one after another, the row-major U [rows, cols] the callers want.
// fp64 because the Gram matrix squares W's condition number: an fp32 Gram would lose the
// singular vectors of the small singular values that the fp32 host SVD still resolves.
#include "engine/cuda/latent_svd.h"

#include <cusolverDn.h>

#include <algorithm>
#include <string>

#include "engine/cache/xquant_latent.h"
#include "engine/cuda/device_buffer.h"
#include "kernels/cpu/ops.h"

namespace xq::cuda {
namespace {

void check_solver(cusolverStatus_t s, const char* what) {
  if (s != CUSOLVER_STATUS_SUCCESS) {
    throw CudaError(std::string("cuSOLVER ") + what + ": status " + std::to_string(int(s)));
  }
}

}  // namespace

LatentSide host_latent_side(const float* w, int rows, int cols) {
  LatentSide out;
  out.basis = row_space_basis(w, rows, cols);
  out.folded.resize(static_cast<size_t>(rows) * rows);
  xq::matmul_nt(w, out.basis.data(), nullptr, out.folded.data(), rows, cols, rows);
  return out;
}

struct GpuLatentSvd::State {
  int rows = 0, cols = 0;
  cublasHandle_t blas = nullptr;
  cusolverDnHandle_t solver = nullptr;
  // a: W (A, cols x rows); gram: W W^T, then its eigenvectors; flip: the exchange matrix J, so
  // E J lists them in descending order; ej: E J, then W U^T; q: A E J, then Q.
  DeviceBuffer<double> a, gram, flip, ej, q, eig, tau, work;
  DeviceBuffer<int> info;
  int lwork = 0;
  std::vector<double> host;  // staging, reused: a fresh 32 MB per call costs its page faults

  ~State() {
    if (solver) cusolverDnDestroy(solver);
    if (blas) cublasDestroy(blas);
  }

  // Throws unless the last solver call's devInfo is 0 (> 0: no convergence; < 0: bad argument).
  void check_info(const char* what) const {
    int h = 0;
    check(cudaMemcpy(&h, info.get(), sizeof(int), cudaMemcpyDeviceToHost), what);
    if (h != 0) {
      throw CudaError(std::string("cuSOLVER ") + what + ": devInfo " + std::to_string(h));
    }
  }

  // C (m x n, ldc = m) = op(A) op(B), column-major.
  void gemm(bool ta, bool tb, int m, int n, int k, const double* A, int lda, const double* B,
            int ldb, double* C, const char* what) const {
    const double one = 1.0, zero = 0.0;
    check(cublasDgemm(blas, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k,
                      &one, A, lda, B, ldb, &zero, C, m),
          what);
  }
};

GpuLatentSvd::GpuLatentSvd(int rows, int cols) : s_(std::make_unique<State>()) {
  if (rows <= 0 || rows > cols) {
    throw CudaError("GPU latent SVD: a " + std::to_string(rows) + "x" + std::to_string(cols) +
                    " weight (needs 0 < rows <= cols)");
  }
  State& s = *s_;
  s.rows = rows, s.cols = cols;
  const size_t r = rows, c = cols;
  check(cublasCreate(&s.blas), "cublasCreate");
  check_solver(cusolverDnCreate(&s.solver), "cusolverDnCreate");
  s.a.reset(c * r);
  s.gram.reset(r * r);
  s.ej.reset(r * r);
  s.q.reset(c * r);
  s.eig.reset(r);
  s.tau.reset(r);
  s.info.reset(1);
  s.host.resize(c * r);
  std::vector<double> flip(r * r, 0.0);
  for (size_t j = 0; j < r; ++j) flip[j * r + (r - 1 - j)] = 1.0;
  s.flip.upload(flip.data(), flip.size());
  int l_eig = 0, l_qr = 0, l_q = 0;
  check_solver(
      cusolverDnDsyevd_bufferSize(s.solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, rows,
                                  s.gram.get(), rows, s.eig.get(), &l_eig),
      "syevd_bufferSize");
  check_solver(cusolverDnDgeqrf_bufferSize(s.solver, cols, rows, s.q.get(), cols, &l_qr),
               "geqrf_bufferSize");
  check_solver(
      cusolverDnDorgqr_bufferSize(s.solver, cols, rows, rows, s.q.get(), cols, s.tau.get(), &l_q),
      "orgqr_bufferSize");
  s.lwork = std::max({l_eig, l_qr, l_q, 1});
  s.work.reset(static_cast<size_t>(s.lwork));
}

GpuLatentSvd::~GpuLatentSvd() = default;

LatentSide GpuLatentSvd::solve(const float* w) {
  State& s = *s_;
  const int r = s.rows, c = s.cols;
  const size_t n = static_cast<size_t>(r) * c;
  std::vector<double>& host = s.host;
  std::copy(w, w + n, host.begin());
  check(cudaMemcpy(s.a.get(), host.data(), n * sizeof(double), cudaMemcpyHostToDevice),
        "latent SVD upload");
  // W W^T = A^T A (r x r) = E diag(eig) E^T, eigenvalues ascending.
  s.gemm(true, false, r, r, c, s.a.get(), c, s.a.get(), c, s.gram.get(), "latent SVD Gram");
  check_solver(cusolverDnDsyevd(s.solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, r,
                                s.gram.get(), r, s.eig.get(), s.work.get(), s.lwork, s.info.get()),
               "syevd");
  s.check_info("syevd");
  // W^T E J: column j is sigma_j v_j, sigma descending.
  s.gemm(false, false, r, r, r, s.gram.get(), r, s.flip.get(), r, s.ej.get(), "latent SVD order");
  s.gemm(false, false, c, r, r, s.a.get(), c, s.ej.get(), r, s.q.get(), "latent SVD lift");
  check_solver(cusolverDnDgeqrf(s.solver, c, r, s.q.get(), c, s.tau.get(), s.work.get(), s.lwork,
                                s.info.get()),
               "geqrf");
  s.check_info("geqrf");
  check_solver(cusolverDnDorgqr(s.solver, c, r, r, s.q.get(), c, s.tau.get(), s.work.get(), s.lwork,
                                s.info.get()),
               "orgqr");
  s.check_info("orgqr");
  // (W U^T)[i][j] = Q^T A at (j, i): its column-major r x r is the row-major W U^T.
  s.gemm(true, false, r, r, c, s.q.get(), c, s.a.get(), c, s.ej.get(), "latent SVD fold");
  check(cudaMemcpy(host.data(), s.q.get(), n * sizeof(double), cudaMemcpyDeviceToHost),
        "latent SVD basis download");
  LatentSide out;
  out.basis.assign(host.begin(), host.end());
  std::vector<double> folded(static_cast<size_t>(r) * r);
  check(
      cudaMemcpy(folded.data(), s.ej.get(), folded.size() * sizeof(double), cudaMemcpyDeviceToHost),
      "latent SVD fold download");
  // Flipping basis row j flips column j of W U^T.
  const std::vector<float> signs = orient_rows(out.basis.data(), r, c);
  out.folded.resize(folded.size());
  for (size_t i = 0; i < static_cast<size_t>(r); ++i) {
    for (size_t j = 0; j < static_cast<size_t>(r); ++j) {
      out.folded[i * r + j] = static_cast<float>(folded[i * r + j]) * signs[j];
    }
  }
  return out;
}

}  // namespace xq::cuda
