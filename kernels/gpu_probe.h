// gpu_probe: which CUDA devices this process can use, and their memory (for --device auto and
// the GPU memory budget). Empty on builds without CUDA and on machines without a driver or GPU.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace xq {

struct GpuInfo {
  int index = 0;
  std::string name;
  int sm_major = 0;
  int sm_minor = 0;
  size_t total_bytes = 0;
  size_t free_bytes = 0;
};

std::vector<GpuInfo> probe_gpus();
// True when this binary was compiled with the CUDA backend.
bool built_with_cuda();

}  // namespace xq
