// The GQA latent's per-layer bases for the CUDA engine, computed on the GPU with cuSOLVER: the
// same basis as the CPU's row_space_basis (engine/cache/xquant_latent.h), in seconds rather than
// the host SVD's minutes for an 8B model, and the host path as reference and fallback.
#pragma once

#include <memory>
#include <vector>

namespace xq::cuda {

// One side (K or V) of a layer's latent, for W [rows, cols] row-major (rows = kv_dim <= cols =
// hidden): the orthonormal basis U [rows, cols] of W's row space (right singular vectors in
// descending order of singular value, oriented as orient_rows) and W U^T [rows, rows], which
// rebuilds W's output from the latent: x W^T = (x U^T)(W U^T)^T.
struct LatentSide {
  std::vector<float> basis;
  std::vector<float> folded;
};

// The host's: LAPACK's SVD (row_space_basis) and a host matmul.
LatentSide host_latent_side(const float* w, int rows, int cols);

// The GPU's, in fp64: the eigenvectors E of the Gram matrix W W^T (cusolverDnDsyevd) are W's
// left singular vectors, so the columns of W^T E, taken in descending order of eigenvalue and
// orthonormalized by a Householder QR (geqrf, orgqr), are its right singular vectors. The QR
// normalizes (no division by a singular value) and completes the basis with orthonormal vectors
// where W is rank deficient, as the host's SVD does. Holds its handles and workspace for one
// shape; not thread-safe. Throws CudaError when cuSOLVER or cuBLAS fails or reports an error.
class GpuLatentSvd {
 public:
  GpuLatentSvd(int rows, int cols);
  ~GpuLatentSvd();
  GpuLatentSvd(const GpuLatentSvd&) = delete;
  GpuLatentSvd& operator=(const GpuLatentSvd&) = delete;

  LatentSide solve(const float* w);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace xq::cuda
