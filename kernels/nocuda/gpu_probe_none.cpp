// The probe of a build without the CUDA toolkit: it can see no GPU.
#include "kernels/gpu_probe.h"

namespace xq {

bool built_with_cuda() { return false; }
std::vector<GpuInfo> probe_gpus() { return {}; }

}  // namespace xq
