#include <cuda_runtime.h>

#include "kernels/gpu_probe.h"

namespace xq {

bool built_with_cuda() { return true; }

std::vector<GpuInfo> probe_gpus() {
  std::vector<GpuInfo> out;
  int n = 0;
  // No driver or no device: an error here means "no GPU", not a failure of the server.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return out;
  }
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    GpuInfo g;
    g.index = i;
    g.name = prop.name;
    g.sm_major = prop.major;
    g.sm_minor = prop.minor;
    g.total_bytes = prop.totalGlobalMem;
    if (cudaSetDevice(i) == cudaSuccess) {
      size_t free_b = 0, total_b = 0;
      // The runtime's total (a little under totalGlobalMem), so used = total - free is what
      // the budget sees.
      if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
        g.free_bytes = free_b;
        g.total_bytes = total_b;
      }
    }
    out.push_back(g);
  }
  cudaGetLastError();
  return out;
}

}  // namespace xq
