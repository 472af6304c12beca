// Turns CUDA runtime and cuBLAS status codes into CudaError exceptions.
#include "kernels/cuda/cuda_ops.h"

namespace xq::cuda {

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  throw CudaError(std::string(what) + ": " + cudaGetErrorString(e));
}

void check(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  throw CudaError(std::string(what) + ": " + cublasGetStatusString(s));
}

}  // namespace xq::cuda
