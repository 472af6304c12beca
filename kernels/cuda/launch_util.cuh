// Shared launch helpers of the CUDA kernels: grid sizing for grid-stride loops and block-wide
// reductions (any blockDim that is a multiple of 32, up to 1024).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace xq::cuda::detail {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements (the loop covers the rest past the cap).
inline unsigned grid_for(size_t n) {
  const size_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 65535 ? blocks : 65535);
}

template <typename T>
struct SumOp {
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct MinOp {
  __device__ float operator()(float a, float b) const { return fminf(a, b); }
};

template <typename T, typename Op>
__device__ T warp_reduce(T v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Every thread of the block gets op over all threads' v. `scratch` holds 32 T; the call ends
// with a barrier, so the scratch may be reused right after.
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  v = warp_reduce(v, op);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = scratch[0];
  for (int w = 1; w < warps; ++w) r = op(r, scratch[w]);
  __syncthreads();
  return r;
}

// Programmatic dependent launch (sm_90+): a kernel launched by launch_pdl may be scheduled
// while the kernel before it in the stream is still finishing, so that its launch and start-up
// (and whatever it does before pdl_wait, such as loading weights) overlap that kernel's tail;
// a batch-1 decode step is ~450 kernels, most of them a few microseconds long. Such a kernel
// must call pdl_wait() before it reads or writes any memory another kernel of the step
// touches; after pdl_wait the kernels before it have finished and their writes are visible.
// pdl_launch_dependents() lets the next such kernel be scheduled once every block of this one
// has passed it. XQ_CUDA_PDL=0 launches them plainly (for side-by-side measurements).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

inline bool pdl_on() {
  static const bool on = [] {
    const char* v = std::getenv("XQ_CUDA_PDL");
    if (v != nullptr && std::strcmp(v, "0") == 0) return false;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return major >= 9;
  }();
  return on;
}

template <typename... Params, typename... Args>
void launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                cudaStream_t stream, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = pdl_on() ? 1 : 0;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  cudaLaunchKernelEx(&cfg, kernel, static_cast<Params>(args)...);
}

}  // namespace xq::cuda::detail
