// The sampler's row changes (penalties, logit_bias, banned ids) made on the device, a thread per
// edited logit, so that a penalized draw is summarized like any other instead of copying its
// row to the host. The intrinsics round each operation alone, as the host's float arithmetic
// does, so that the edited row is the host's bit for bit.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/sample_ops.h"

namespace xq::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void apply_edits_kernel(float* logits, int vocab, const RowEdit* edits, int n,
                                   float* unedited) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const RowEdit e = edits[i];
  float* at = logits + static_cast<size_t>(e.row) * vocab + e.id;
  float l = *at;
  unedited[i] = l;
  if (e.ops & 1u) l = l > 0.0f ? __fdiv_rn(l, e.rep) : __fmul_rn(l, e.rep);
  if (e.ops & 2u) l = __fsub_rn(l, e.sub);
  if (e.ops & 4u) l = __fadd_rn(l, e.add);
  if (e.ops & 8u) l = -INFINITY;
  *at = l;
}

__global__ void restore_edits_kernel(float* logits, int vocab, const RowEdit* edits, int n,
                                     const float* unedited) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  logits[static_cast<size_t>(edits[i].row) * vocab + edits[i].id] = unedited[i];
}

}  // namespace

void apply_row_edits(float* logits, int vocab, const RowEdit* edits, int n, float* unedited,
                     cudaStream_t stream) {
  if (n <= 0) return;
  apply_edits_kernel<<<(n + kThreads - 1) / kThreads, kThreads, 0, stream>>>(logits, vocab, edits,
                                                                             n, unedited);
  check(cudaGetLastError(), "apply_row_edits");
}

void restore_row_edits(float* logits, int vocab, const RowEdit* edits, int n, const float* unedited,
                       cudaStream_t stream) {
  if (n <= 0) return;
  restore_edits_kernel<<<(n + kThreads - 1) / kThreads, kThreads, 0, stream>>>(logits, vocab, edits,
                                                                               n, unedited);
  check(cudaGetLastError(), "restore_row_edits");
}

}  // namespace xq::cuda
