// y[n, out] = x[n, in] · w[out, in]^T for n <= kSkinnyMaxRows (bf16 operands, fp32 accumulation
// and output): the weight-streaming product of small decode batches. matmul_nt uses it where it
// fits; CPU reference: kernels/cpu/ops.h matmul_nt.
#pragma once

#include "kernels/cuda/cuda_ops.h"

namespace xq::cuda {

constexpr int kSkinnyMaxRows = 8;

// n in [1, kSkinnyMaxRows], in a multiple of 8, x and w 16-byte aligned.
bool skinny_matmul_fits(const bf16* x, const bf16* w, int n, int in);
void skinny_matmul(const bf16* x, const bf16* w, float* y, int n, int in, int out,
                   cudaStream_t stream);

}  // namespace xq::cuda
