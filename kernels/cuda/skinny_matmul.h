// y[n, out] = x[n, in] · w[out, in]^T for n <= kSkinnyMaxRows (bf16 operands, fp32 accumulation
// and output): the weight-streaming product of small decode batches. matmul_nt uses it where it
// fits; CPU reference: kernels/cpu/ops.h matmul_nt.
#pragma once

#include "kernels/cuda/cuda_ops.h"

namespace xq::cuda {

constexpr int kSkinnyMaxRows = 8;

// False where XQ_CUDA_SKINNY=0 (every product left to cuBLAS, for side-by-side measurements).
bool skinny_matmul_on();
// n in [1, kSkinnyMaxRows], in a multiple of 8, x and w 16-byte aligned.
bool skinny_matmul_fits(const bf16* x, const bf16* w, int n, int in);
void skinny_matmul(const bf16* x, const bf16* w, float* y, int n, int in, int out,
                   cudaStream_t stream);
// The MLP's first half for such rows: w stacks gate (rows [0, width)) over up (rows [width,
// 2 width)); act[n, width] = act_fn(x · gateᵀ) * (x · upᵀ) in bf16, act_fn silu or (gelu)
// gelu-tanh. CPU reference: matmul_nt then gated_act.
void skinny_gated(const bf16* x, const bf16* w, bf16* act, int n, int in, int width, bool gelu,
                  cudaStream_t stream);

}  // namespace xq::cuda
