// Writing fp32 K/V rows into fp16 pages of a paged store (the cache pool or the workspace).
#include <algorithm>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/launch_util.cuh"

namespace xq::cuda {
namespace {

// One block per batch row; rows the map skips (negative page) are not touched.
__global__ void write_kv_rows_kernel(const float* k, const float* v, int dim, RowMap map,
                                     KvPages pages) {
  detail::pdl_wait();
  detail::pdl_launch_dependents();
  const int p = map.page[blockIdx.x];
  if (p < 0) return;
  const size_t at = static_cast<size_t>(p) * pages.page_stride +
                    static_cast<size_t>(map.slot[blockIdx.x]) * pages.row_stride;
  const size_t src = static_cast<size_t>(blockIdx.x) * dim;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) {
    pages.k[at + j] = __float2half_rn(k[src + j]);
    pages.v[at + j] = __float2half_rn(v[src + j]);
  }
}

}  // namespace

void write_kv_rows(const float* k, const float* v, int n, int dim, RowMap map, KvPages pages,
                   cudaStream_t stream) {
  if (n <= 0 || dim <= 0) return;
  // A decode step writes a row or a few: one element per thread, not a loop of dependent loads.
  const int threads = n >= 128 ? detail::kThreads : std::min(1024, (dim + 31) / 32 * 32);
  detail::launch_pdl(write_kv_rows_kernel, n, threads, 0, stream, k, v, dim, map, pages);
  check(cudaGetLastError(), "write_kv_rows");
}

}  // namespace xq::cuda
