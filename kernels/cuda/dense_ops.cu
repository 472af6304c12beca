// The dense per-row and elementwise ops of the CUDA engine (CPU references: kernels/cpu/ops.h,
// rope.h) and the cuBLAS matmul.
#include <algorithm>
#include <cstdlib>
#include <string>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/launch_util.cuh"
#include "kernels/cuda/rope_math.cuh"
#include "kernels/cuda/skinny_matmul.h"

namespace xq::cuda {
namespace {

using detail::grid_for;
using detail::kThreads;
using detail::rope_angle;

__global__ void embed_kernel(const bf16* table, const int* tokens, int hidden, float scale,
                             float* h) {
  detail::pdl_wait();
  detail::pdl_launch_dependents();
  const size_t r = blockIdx.x;
  const bf16* src = table + static_cast<size_t>(tokens[r]) * hidden;
  for (int j = threadIdx.x; j < hidden; j += blockDim.x) {
    h[r * hidden + j] = __bfloat162float(src[j]) * scale;
  }
}

// One block per row; the sum of squares in double like the CPU reference (outliers of 1e3+).
// With `res`, x += res first (the residual add before the next norm), written back to x. A thread
// keeps its first kNormCache values in registers, so a row is read once with all loads in flight
// (a 4096-wide row in one 1024-thread block: one load round trip, not one per value).
constexpr int kNormCache = 8;

__global__ void rmsnorm_kernel(float* x, const float* res, const float* w, int dim, float eps,
                               bool one_plus, float* y, bf16* y_bf16) {
  detail::pdl_wait();
  detail::pdl_launch_dependents();
  __shared__ double scratch[32];
  const size_t base = static_cast<size_t>(blockIdx.x) * dim;
  const int tid = threadIdx.x, step = blockDim.x;
  const auto load = [&](int i) {
    float v = x[base + i];
    if (res) {
      v += res[base + i];
      x[base + i] = v;
    }
    return v;
  };
  float cache[kNormCache];
  double ss = 0.0;
#pragma unroll
  for (int k = 0; k < kNormCache; ++k) {
    const int i = tid + k * step;
    cache[k] = i < dim ? load(i) : 0.0f;
    ss += static_cast<double>(cache[k]) * cache[k];
  }
  for (int i = tid + kNormCache * step; i < dim; i += step) {
    const double v = load(i);
    ss += v * v;
  }
  ss = detail::block_reduce(ss, detail::SumOp<double>(), scratch);
  const float inv = static_cast<float>(1.0 / sqrt(ss / dim + eps));
  const auto store = [&](int i, float xv) {
    const float v = xv * inv * (one_plus ? 1.0f + w[i] : w[i]);
    y[base + i] = v;
    if (y_bf16) y_bf16[base + i] = __float2bfloat16_rn(v);
  };
#pragma unroll
  for (int k = 0; k < kNormCache; ++k) {
    const int i = tid + k * step;
    if (i < dim) store(i, cache[k]);
  }
  for (int i = tid + kNormCache * step; i < dim; i += step) store(i, x[base + i]);
}

__global__ void add_bias_kernel(float* y, const float* bias, int dim, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    y[i] += bias[i % dim];
  }
}

__global__ void add_kernel(float* y, const float* x, size_t n) {
  detail::pdl_wait();
  detail::pdl_launch_dependents();
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    y[i] += x[i];
  }
}

__global__ void rope_table_kernel(const double* inv_freq, int hd2, size_t n, float2* table) {
  for (size_t e = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<size_t>(gridDim.x) * blockDim.x) {
    table[e] = rope_angle(static_cast<int>(e / hd2), static_cast<int>(e % hd2), inv_freq);
  }
}

__device__ __forceinline__ float load_f(const float* x, size_t i) { return x[i]; }
__device__ __forceinline__ float load_f(const bf16* x, size_t i) { return __bfloat162float(x[i]); }

// A thread per rotated pair (row, head, i), so a decode step's few rows still fill the device;
// rows x heads x pairs in 32-bit index arithmetic where the launch fits (the remat path rotates
// ~10^8 pairs a step, where 64-bit division shows). `out` null: in place; else the rotated (or,
// at pos < 0, unrotated) rows as fp16 there, in the same layout.
template <class In, class Index>
__global__ void rope_kernel(const In* x, float* x_out, int rows, int heads, int head_dim,
                            int row_stride, const int* pos, RopeAngles ra, half* out) {
  detail::pdl_wait();
  detail::pdl_launch_dependents();
  const Index hd2 = head_dim / 2;
  const Index n = static_cast<Index>(rows) * heads * hd2;
  for (Index e = blockIdx.x * static_cast<Index>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<Index>(gridDim.x) * blockDim.x) {
    const Index i = e % hd2, rh = e / hd2;
    const Index h = rh % heads, r = rh / heads;
    const int p = pos[r];
    const size_t at = static_cast<size_t>(r) * row_stride + static_cast<size_t>(h) * head_dim + i;
    float2 cs = make_float2(1.0f, 0.0f);
    if (p >= 0) {
      cs = p < ra.table_positions ? ra.table[static_cast<size_t>(p) * hd2 + i]
                                  : rope_angle(p, static_cast<int>(i), ra.inv_freq);
    } else if (!out) {
      continue;
    }
    const float lo = load_f(x, at), hi = load_f(x, at + hd2);
    const float rlo = lo * cs.x - hi * cs.y, rhi = hi * cs.x + lo * cs.y;
    if (out) {
      out[at] = __float2half_rn(rlo);
      out[at + hd2] = __float2half_rn(rhi);
    } else {
      x_out[at] = rlo;
      x_out[at + hd2] = rhi;
    }
  }
}

template <class In>
void launch_rope(const In* x, float* x_out, int rows, int heads, int head_dim, int row_stride,
                 const int* pos, RopeAngles ra, half* out, cudaStream_t stream) {
  if (rows <= 0 || heads <= 0 || head_dim < 2) return;
  const size_t n = static_cast<size_t>(rows) * heads * (head_dim / 2);
  if (n < (size_t{1} << 31)) {
    detail::launch_pdl(rope_kernel<In, unsigned>, grid_for(n), kThreads, 0, stream, x, x_out,
                       rows, heads, head_dim, row_stride, pos, ra, out);
  } else {
    detail::launch_pdl(rope_kernel<In, size_t>, grid_for(n), kThreads, 0, stream, x, x_out,
                       rows, heads, head_dim, row_stride, pos, ra, out);
  }
  check(cudaGetLastError(), "rope");
}

__global__ void gated_act_kernel(const float* gate, const float* up, int width, int stride,
                                 size_t n, bool gelu, bf16* out) {
  detail::pdl_wait();
  detail::pdl_launch_dependents();
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  for (size_t o = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; o < n;
       o += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t i = o / width * stride + o % width;
    const float g = gate[i];
    float a;
    if (gelu) {
      a = 0.5f * g * (1.0f + tanhf(kSqrt2OverPi * (g + 0.044715f * g * g * g)));
    } else {
      a = g / (1.0f + expf(-g));
    }
    out[o] = __float2bfloat16_rn(a * up[i]);
  }
}

__global__ void split_qkv_kernel(const float* y, int q, int kv, const float* bq, const float* bk,
                                 const float* bv, size_t n, float* oq, float* ok, float* ov) {
  detail::pdl_wait();
  detail::pdl_launch_dependents();
  const int width = q + 2 * kv;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t r = i / width;
    const int c = static_cast<int>(i % width);
    const float v = y[i];
    if (c < q) {
      oq[r * q + c] = bq ? v + bq[c] : v;
    } else if (c < q + kv) {
      ok[r * kv + c - q] = bk ? v + bk[c - q] : v;
    } else {
      ov[r * kv + c - q - kv] = bv ? v + bv[c - q - kv] : v;
    }
  }
}

// split_qkv and RoPE of Q and K in one pass (models without q/k norms): a thread per output
// value; a rotated value reads its pair's partner too.
__global__ void qkv_rope_kernel(const float* y, int q, int kv, int head_dim, const float* bq,
                                const float* bk, const float* bv, size_t n, const int* pos,
                                RopeAngles ra, float* oq, float* ok, float* ov) {
  detail::pdl_wait();
  detail::pdl_launch_dependents();
  const int width = q + 2 * kv, hd2 = head_dim / 2;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t r = i / width;
    const int c = static_cast<int>(i % width);
    const float* row = y + r * width;
    if (c >= q + kv) {
      ov[r * kv + c - q - kv] = bv ? row[c] + bv[c - q - kv] : row[c];
      continue;
    }
    const bool is_q = c < q;
    const int base = is_q ? 0 : q, cc = c - base, d = cc % head_dim;
    const float* b = is_q ? bq : bk;
    const int partner = d < hd2 ? cc + hd2 : cc - hd2;
    const float self = b ? row[c] + b[cc] : row[c];
    const float other = b ? row[base + partner] + b[partner] : row[base + partner];
    float v = self;
    const int p = pos[r];
    if (p >= 0) {
      const int k = d < hd2 ? d : d - hd2;
      const float2 cs = p < ra.table_positions ? ra.table[static_cast<size_t>(p) * hd2 + k]
                                               : rope_angle(p, k, ra.inv_freq);
      v = d < hd2 ? self * cs.x - other * cs.y : self * cs.x + other * cs.y;
    }
    if (is_q)
      oq[r * q + cc] = v;
    else
      ok[r * kv + cc] = v;
  }
}

__global__ void softcap_kernel(float* x, size_t n, float cap) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    x[i] = cap * tanhf(x[i] / cap);
  }
}

__global__ void to_bf16_kernel(const float* x, size_t n, bf16* y) {
  detail::pdl_wait();
  detail::pdl_launch_dependents();
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    y[i] = __float2bfloat16_rn(x[i]);
  }
}

// Eight values per thread: one 16-byte load and store.
__global__ void bf16_to_half_kernel(const bf16* x, size_t n8, half* y) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n8;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint4 in = reinterpret_cast<const uint4*>(x)[i];
    const __nv_bfloat162* b = reinterpret_cast<const __nv_bfloat162*>(&in);
    uint4 outv;
    half2* h = reinterpret_cast<half2*>(&outv);
#pragma unroll
    for (int k = 0; k < 4; ++k) h[k] = __float22half2_rn(__bfloat1622float2(b[k]));
    reinterpret_cast<uint4*>(y)[i] = outv;
  }
}

__global__ void to_half_kernel(const float* x, size_t n, half* y) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    y[i] = __float2half_rn(x[i]);
  }
}

__global__ void gather_rows_kernel(const float* x, const int* rows, int dim, float* y) {
  const float* src = x + static_cast<size_t>(rows[blockIdx.x]) * dim;
  float* dst = y + static_cast<size_t>(blockIdx.x) * dim;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) dst[j] = src[j];
}

}  // namespace

void embed(const bf16* table, const int* tokens, int rows, int hidden, float scale, float* h,
           cudaStream_t stream) {
  if (rows <= 0 || hidden <= 0) return;
  detail::launch_pdl(embed_kernel, rows, kThreads, 0, stream, table, tokens, hidden, scale, h);
  check(cudaGetLastError(), "embed");
}

namespace {

// Few rows (decode) get wide blocks: the whole row's loads at once. Many rows fill the device
// with narrower ones.
unsigned norm_threads(int rows, int dim) {
  const int t = rows >= 128 ? 256 : 1024;
  return static_cast<unsigned>(std::min(t, std::max(32, (dim + 31) / 32 * 32)));
}

}  // namespace

void rmsnorm(const float* x, const float* w, int rows, int dim, float eps, bool one_plus, float* y,
             bf16* y_bf16, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return;
  detail::launch_pdl(rmsnorm_kernel, rows, norm_threads(rows, dim), 0, stream,
                     const_cast<float*>(x), nullptr, w, dim, eps, one_plus, y, y_bf16);
  check(cudaGetLastError(), "rmsnorm");
}

void add_rmsnorm(float* x, const float* res, const float* w, int rows, int dim, float eps,
                 bool one_plus, float* y, bf16* y_bf16, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return;
  detail::launch_pdl(rmsnorm_kernel, rows, norm_threads(rows, dim), 0, stream, x, res, w, dim,
                     eps, one_plus, y, y_bf16);
  check(cudaGetLastError(), "add_rmsnorm");
}

void add_bias(float* y, const float* bias, int rows, int dim, cudaStream_t stream) {
  const size_t n = static_cast<size_t>(rows > 0 ? rows : 0) * (dim > 0 ? dim : 0);
  if (n == 0) return;
  add_bias_kernel<<<grid_for(n), kThreads, 0, stream>>>(y, bias, dim, n);
  check(cudaGetLastError(), "add_bias");
}

void add(float* y, const float* x, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  detail::launch_pdl(add_kernel, grid_for(n), kThreads, 0, stream, y, x, n);
  check(cudaGetLastError(), "add");
}

void rope_table(const double* inv_freq, int head_dim, int positions, float2* table,
                cudaStream_t stream) {
  const size_t n = static_cast<size_t>(positions > 0 ? positions : 0) * (head_dim / 2);
  if (n == 0) return;
  rope_table_kernel<<<grid_for(n), kThreads, 0, stream>>>(inv_freq, head_dim / 2, n, table);
  check(cudaGetLastError(), "rope_table");
}

void rope(float* x, int rows, int heads, int head_dim, int row_stride, const int* pos,
          RopeAngles angles, cudaStream_t stream) {
  launch_rope<float>(x, x, rows, heads, head_dim, row_stride, pos, angles, nullptr, stream);
}

void rope_to_half(const float* x, int rows, int heads, int head_dim, int row_stride,
                  const int* pos, RopeAngles angles, half* out, cudaStream_t stream) {
  launch_rope<float>(x, nullptr, rows, heads, head_dim, row_stride, pos, angles, out, stream);
}

void rope_to_half(const bf16* x, int rows, int heads, int head_dim, int row_stride,
                  const int* pos, RopeAngles angles, half* out, cudaStream_t stream) {
  launch_rope<bf16>(x, nullptr, rows, heads, head_dim, row_stride, pos, angles, out, stream);
}

void gated_act(const float* gate, const float* up, int rows, int width, int stride, bool gelu,
               bf16* out, cudaStream_t stream) {
  if (rows <= 0 || width <= 0) return;
  const size_t n = static_cast<size_t>(rows) * width;
  detail::launch_pdl(gated_act_kernel, grid_for(n), kThreads, 0, stream, gate, up, width, stride, n,
                     gelu, out);
  check(cudaGetLastError(), "gated_act");
}

void split_qkv(const float* y, int rows, int q, int kv, const float* bq, const float* bk,
               const float* bv, float* out_q, float* out_k, float* out_v, cudaStream_t stream) {
  if (rows <= 0) return;
  const size_t n = static_cast<size_t>(rows) * (q + 2 * kv);
  detail::launch_pdl(split_qkv_kernel, grid_for(n), kThreads, 0, stream, y, q, kv, bq, bk, bv, n,
                     out_q, out_k, out_v);
  check(cudaGetLastError(), "split_qkv");
}

void qkv_rope(const float* y, int rows, int q, int kv, int head_dim, const float* bq,
              const float* bk, const float* bv, const int* pos, RopeAngles angles, float* out_q,
              float* out_k, float* out_v, cudaStream_t stream) {
  if (rows <= 0) return;
  const size_t n = static_cast<size_t>(rows) * (q + 2 * kv);
  detail::launch_pdl(qkv_rope_kernel, grid_for(n), kThreads, 0, stream, y, q, kv, head_dim, bq, bk,
                     bv, n, pos, angles, out_q, out_k, out_v);
  check(cudaGetLastError(), "qkv_rope");
}

void softcap(float* x, size_t n, float cap, cudaStream_t stream) {
  if (n == 0 || !(cap > 0.0f)) return;
  softcap_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, n, cap);
  check(cudaGetLastError(), "softcap");
}

void to_bf16(const float* x, size_t n, bf16* y, cudaStream_t stream) {
  if (n == 0) return;
  detail::launch_pdl(to_bf16_kernel, grid_for(n), kThreads, 0, stream, x, n, y);
  check(cudaGetLastError(), "to_bf16");
}

void bf16_to_half(const bf16* x, size_t n, half* y, cudaStream_t stream) {
  if (n == 0) return;
  if (n % 8 != 0 || reinterpret_cast<uintptr_t>(x) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(y) % 16 != 0)
    throw CudaError("bf16_to_half: n must be a multiple of 8 and both arrays 16-byte aligned");
  bf16_to_half_kernel<<<grid_for(n / 8), kThreads, 0, stream>>>(x, n / 8, y);
  check(cudaGetLastError(), "bf16_to_half");
}

void to_half(const float* x, size_t n, half* y, cudaStream_t stream) {
  if (n == 0) return;
  to_half_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, n, y);
  check(cudaGetLastError(), "to_half");
}

void gather_rows(const float* x, const int* rows, int n, int dim, float* y, cudaStream_t stream) {
  if (n <= 0 || dim <= 0) return;
  gather_rows_kernel<<<n, kThreads, 0, stream>>>(x, rows, dim, y);
  check(cudaGetLastError(), "gather_rows");
}

void matmul_nt(cublasHandle_t handle, const bf16* x, const bf16* w, float* y, int n, int in,
               int out) {
  if (n <= 0 || out <= 0) return;
  if (skinny_matmul_on() && skinny_matmul_fits(x, w, n, in)) {
    cudaStream_t stream = nullptr;
    check(cublasGetStream(handle, &stream), "cublasGetStream");
    skinny_matmul(x, w, y, n, in, out, stream);
    return;
  }
  // Row-major y[n, out] is column-major y^T[out, n] = w[out, in] · x^T[in, n]: w (column-major
  // [in, out]) transposed times x (column-major [in, n]).
  const float one = 1.0f, zero = 0.0f;
  check(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w, CUDA_R_16BF, in, x,
                     CUDA_R_16BF, in, &zero, y, CUDA_R_32F, out, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT),
        "matmul_nt (cublasGemmEx)");
}

}  // namespace xq::cuda
