// One row K and V are rebuilt from, as XQuant-CL writes it: bf16 of the reconstruction, or of
// its RMSNorm (the residual stream's deltas) as rmsnorm in kernels/cpu/ops.h: the sum of squares
// in double, eps inside the root, one_plus for Gemma. Shared by the per-token accumulator rows
// (cl_rows.cu) and the -ch forms' window rows (cl_channel.cu). Every thread of the block calls
// it (the norm reduces across the block).
#pragma once

#include "kernels/cuda/launch_util.cuh"

namespace xq::cuda::detail {

template <typename Value>
__device__ void write_rebuilt_row(Value value, int width, const float* norm, float eps,
                                  bool one_plus, bf16* o, double* scratch) {
  if (norm == nullptr) {
    for (int j = threadIdx.x; j < width; j += blockDim.x) o[j] = __float2bfloat16_rn(value(j));
    return;
  }
  double ss = 0.0;
  for (int j = threadIdx.x; j < width; j += blockDim.x) {
    const double v = value(j);
    ss += v * v;
  }
  ss = block_reduce(ss, SumOp<double>{}, scratch);
  const float inv = static_cast<float>(1.0 / sqrt(ss / width + eps));
  for (int j = threadIdx.x; j < width; j += blockDim.x)
    o[j] = __float2bfloat16_rn(value(j) * inv * (one_plus ? 1.0f + norm[j] : norm[j]));
}

}  // namespace xq::cuda::detail
