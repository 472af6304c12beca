// PinnedBuffer: an owned page-locked host allocation (cudaMallocHost) of n elements of T,
// move-only. A device-to-host copy into pageable memory is staged by the driver at a fraction
// of the bus speed; into pinned memory it runs at full speed.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <utility>

#include "kernels/cuda/cuda_ops.h"

namespace xq::cuda {

template <class T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  PinnedBuffer(PinnedBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  ~PinnedBuffer() { release(); }

  // Frees, then allocates n elements (contents undefined).
  void reset(size_t n) {
    release();
    if (n == 0) return;
    void* p = nullptr;
    const cudaError_t e = cudaMallocHost(&p, n * sizeof(T));
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw CudaError("cudaMallocHost of " + std::to_string(n * sizeof(T)) +
                      " bytes: " + cudaGetErrorString(e));
    }
    p_ = static_cast<T*>(p);
    n_ = n;
  }

  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  void release() {
    if (p_) cudaFreeHost(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace xq::cuda
