// matmul_nt for a few rows (decode at small batch): streaming the weight matrix once at full
// memory bandwidth is the whole cost, which cuBLAS's GEMM kernels reach poorly at n <= 8. A warp
// owns one output column: 16-byte weight loads that bypass L1, the n activation rows from L1/L2.
#include "kernels/cuda/launch_util.cuh"
#include "kernels/cuda/skinny_matmul.h"

namespace xq::cuda {
namespace {

constexpr int kWarps = 4;

template <int N>
__global__ void __launch_bounds__(kWarps * 32)
    skinny_kernel(const bf16* x, const bf16* w, float* y, int in, int out) {
  const int lane = threadIdx.x & 31;
  const int j = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (j >= out) return;
  const uint4* wr = reinterpret_cast<const uint4*>(w + static_cast<size_t>(j) * in);
  const int vecs = in / 8;
  float acc[N];
#pragma unroll
  for (int r = 0; r < N; ++r) acc[r] = 0.0f;
#pragma unroll 4
  for (int v = lane; v < vecs; v += 32) {
    const uint4 wv = __ldcs(wr + v);
    const __nv_bfloat162* wp = reinterpret_cast<const __nv_bfloat162*>(&wv);
    float2 wf[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) wf[e] = __bfloat1622float2(wp[e]);
#pragma unroll
    for (int r = 0; r < N; ++r) {
      const uint4 xv = __ldg(reinterpret_cast<const uint4*>(x + static_cast<size_t>(r) * in) + v);
      const __nv_bfloat162* xp = reinterpret_cast<const __nv_bfloat162*>(&xv);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 xf = __bfloat1622float2(xp[e]);
        acc[r] += wf[e].x * xf.x + wf[e].y * xf.y;
      }
    }
  }
#pragma unroll
  for (int r = 0; r < N; ++r) {
    const float s = detail::warp_reduce(acc[r], detail::SumOp<float>());
    if (lane == 0) y[static_cast<size_t>(r) * out + j] = s;
  }
}

template <int N>
void launch(const bf16* x, const bf16* w, float* y, int in, int out, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>((out + kWarps - 1) / kWarps);
  skinny_kernel<N><<<blocks, kWarps * 32, 0, stream>>>(x, w, y, in, out);
}

}  // namespace

bool skinny_matmul_fits(const bf16* x, const bf16* w, int n, int in) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return n >= 1 && n <= kSkinnyMaxRows && in % 8 == 0 && aligned(x) && aligned(w);
}

void skinny_matmul(const bf16* x, const bf16* w, float* y, int n, int in, int out,
                   cudaStream_t stream) {
  if (n <= 0 || out <= 0) return;
  if (!skinny_matmul_fits(x, w, n, in))
    throw CudaError("skinny_matmul: needs 1..8 rows, in % 8 == 0 and 16-byte aligned operands");
  switch (n) {
    case 1:
      launch<1>(x, w, y, in, out, stream);
      break;
    case 2:
      launch<2>(x, w, y, in, out, stream);
      break;
    case 3:
      launch<3>(x, w, y, in, out, stream);
      break;
    case 4:
      launch<4>(x, w, y, in, out, stream);
      break;
    case 5:
      launch<5>(x, w, y, in, out, stream);
      break;
    case 6:
      launch<6>(x, w, y, in, out, stream);
      break;
    case 7:
      launch<7>(x, w, y, in, out, stream);
      break;
    default:
      launch<8>(x, w, y, in, out, stream);
      break;
  }
  check(cudaGetLastError(), "skinny_matmul");
}

}  // namespace xq::cuda
