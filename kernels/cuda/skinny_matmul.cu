// matmul_nt for a few rows (decode at small batch): streaming the weight matrix once at full
// memory bandwidth is the whole cost, which cuBLAS's GEMM kernels reach poorly at n <= 8. A warp
// owns one output column (or, gated, a gate column and its up column): 16-byte weight loads that
// bypass L1, the n activation rows from L1/L2. The first loads of each warp's weights are issued
// before pdl_wait, while the kernel before it (which writes x) is still finishing.
#include <cstdlib>
#include <string>
#include <type_traits>

#include "kernels/cuda/launch_util.cuh"
#include "kernels/cuda/skinny_matmul.h"

namespace xq::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kEarly = 4;  // weight vectors per lane loaded before pdl_wait

template <int N>
__device__ __forceinline__ void dot_vec(const uint4& wv, const bf16* x, int in, int v,
                                        float (&acc)[N]) {
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

// One weight row's products with the n rows of x, summed over the warp (every lane gets them).
// `wr` row of `in` bf16; `early` holds its first kEarly vectors per lane, already loaded.
template <int N>
__device__ __forceinline__ void row_products(const uint4* wr, const uint4 (&early)[kEarly],
                                             const bf16* x, int in, float (&acc)[N]) {
  const int lane = threadIdx.x & 31, vecs = in / 8;
#pragma unroll
  for (int r = 0; r < N; ++r) acc[r] = 0.0f;
#pragma unroll
  for (int u = 0; u < kEarly; ++u) {
    const int v = lane + 32 * u;
    if (v < vecs) dot_vec<N>(early[u], x, in, v, acc);
  }
#pragma unroll 4
  for (int v = lane + 32 * kEarly; v < vecs; v += 32) dot_vec<N>(__ldcs(wr + v), x, in, v, acc);
#pragma unroll
  for (int r = 0; r < N; ++r) acc[r] = detail::warp_reduce(acc[r], detail::SumOp<float>());
}

__device__ __forceinline__ void load_early(const uint4* wr, int in, uint4 (&early)[kEarly]) {
  const int lane = threadIdx.x & 31, vecs = in / 8;
#pragma unroll
  for (int u = 0; u < kEarly; ++u) {
    const int v = lane + 32 * u;
    if (v < vecs) early[u] = __ldcs(wr + v);
  }
}

template <int N>
__global__ void __launch_bounds__(kWarps * 32)
    skinny_kernel(const bf16* x, const bf16* w, float* y, int in, int out) {
  const int j = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const uint4* wr = reinterpret_cast<const uint4*>(w + static_cast<size_t>(j) * in);
  uint4 early[kEarly];
  if (j < out) load_early(wr, in, early);
  detail::pdl_wait();
  detail::pdl_launch_dependents();
  if (j >= out) return;
  float acc[N];
  row_products<N>(wr, early, x, in, acc);
  if ((threadIdx.x & 31) == 0) {
#pragma unroll
    for (int r = 0; r < N; ++r) y[static_cast<size_t>(r) * out + j] = acc[r];
  }
}

// The gate and up products of a stacked [gate; up] matrix (2 * width rows) and the gated
// activation of the two, in bf16: act = silu(gate) * up (or gelu-tanh(gate) * up).
template <int N>
__global__ void __launch_bounds__(kWarps * 32)
    skinny_gated_kernel(const bf16* x, const bf16* w, bf16* act, int in, int width, bool gelu) {
  const int j = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const uint4* wg = reinterpret_cast<const uint4*>(w + static_cast<size_t>(j) * in);
  const uint4* wu = reinterpret_cast<const uint4*>(w + static_cast<size_t>(j + width) * in);
  uint4 early_g[kEarly], early_u[kEarly];
  if (j < width) {
    load_early(wg, in, early_g);
    load_early(wu, in, early_u);
  }
  detail::pdl_wait();
  detail::pdl_launch_dependents();
  if (j >= width) return;
  float g[N], u[N];
  row_products<N>(wg, early_g, x, in, g);
  row_products<N>(wu, early_u, x, in, u);
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  if ((threadIdx.x & 31) == 0) {
#pragma unroll
    for (int r = 0; r < N; ++r) {
      const float a = gelu ? 0.5f * g[r] * (1.0f + tanhf(kSqrt2OverPi *
                                                        (g[r] + 0.044715f * g[r] * g[r] * g[r])))
                           : g[r] / (1.0f + expf(-g[r]));
      act[static_cast<size_t>(r) * width + j] = __float2bfloat16_rn(a * u[r]);
    }
  }
}

template <int N>
void launch(const bf16* x, const bf16* w, float* y, int in, int out, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>((out + kWarps - 1) / kWarps);
  detail::launch_pdl(skinny_kernel<N>, blocks, kWarps * 32, 0, stream, x, w, y, in, out);
}

template <int N>
void launch_gated(const bf16* x, const bf16* w, bf16* act, int in, int width, bool gelu,
                  cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>((width + kWarps - 1) / kWarps);
  detail::launch_pdl(skinny_gated_kernel<N>, blocks, kWarps * 32, 0, stream, x, w, act, in, width,
                     gelu);
}

// Calls f(std::integral_constant<int, n>{}) for n in [1, kSkinnyMaxRows].
template <class F>
void with_rows(int n, F&& f) {
  switch (n) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    default: f(std::integral_constant<int, 8>{}); break;
  }
}

}  // namespace

bool skinny_matmul_on() {
  static const bool on = [] {
    const char* v = std::getenv("XQ_CUDA_SKINNY");
    return v == nullptr || std::string(v) != "0";
  }();
  return on;
}

bool skinny_matmul_fits(const bf16* x, const bf16* w, int n, int in) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return n >= 1 && n <= kSkinnyMaxRows && in % 8 == 0 && aligned(x) && aligned(w);
}

void skinny_matmul(const bf16* x, const bf16* w, float* y, int n, int in, int out,
                   cudaStream_t stream) {
  if (n <= 0 || out <= 0) return;
  if (!skinny_matmul_fits(x, w, n, in))
    throw CudaError("skinny_matmul: needs 1..8 rows, in % 8 == 0 and 16-byte aligned operands");
  with_rows(n, [&](auto rows) { launch<decltype(rows)::value>(x, w, y, in, out, stream); });
  check(cudaGetLastError(), "skinny_matmul");
}

void skinny_gated(const bf16* x, const bf16* w, bf16* act, int n, int in, int width, bool gelu,
                  cudaStream_t stream) {
  if (n <= 0 || width <= 0) return;
  if (!skinny_matmul_fits(x, w, n, in))
    throw CudaError("skinny_gated: needs 1..8 rows, in % 8 == 0 and 16-byte aligned operands");
  with_rows(n, [&](auto rows) {
    launch_gated<decltype(rows)::value>(x, w, act, in, width, gelu, stream);
  });
  check(cudaGetLastError(), "skinny_gated");
}

}  // namespace xq::cuda
