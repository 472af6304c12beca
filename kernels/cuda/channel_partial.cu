// Per-channel quantization of each sequence's unfilled block as a partial block, from rows of a
// buffer (channel_ops.h quantize_window_partial): one thread per channel finds the range in
// order, as the CPU's loop does, then writes zero + scale * code per row.
#include "kernels/cuda/channel_ops.h"
#include "kernels/cuda/launch_util.cuh"
#include "kernels/cuda/quant_math.cuh"

namespace xq::cuda {
namespace {

using detail::group_params;
using detail::GroupParams;
using detail::half_bits_to_float;
using detail::quant_code;
using detail::widen;

constexpr int kPartialThreads = 256;

__device__ inline void store(float* o, float v) { *o = v; }
__device__ inline void store(bf16* o, float v) { *o = __float2bfloat16_rn(v); }

template <typename T>
__global__ void partial_kernel(const float* x, int width, int group, int bits, ChannelSeqs s,
                               int first, const int* ws_row, T* out) {
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= width) return;
  const int start = s.seqs[first + blockIdx.x].start_pos, lo = start - start % group;
  if (lo >= start) return;
  const size_t row0 = static_cast<size_t>(ws_row[blockIdx.x]);
  // The CPU's unfilled block holds fp16 values (ChannelQuantRows' tail).
  auto value = [&](int p) { return __half2float(__float2half_rn(x[(row0 + p) * width + c])); };
  T* o = out + row0 * width + c;
  if (bits == 16) {
    for (int p = lo; p < start; ++p) store(o + static_cast<size_t>(p) * width, value(p));
    return;
  }
  float vlo = INFINITY, vhi = -INFINITY;
  for (int p = lo; p < start; ++p) widen(value(p), vlo, vhi);
  const GroupParams q = group_params(vlo, vhi, bits);
  const float z = half_bits_to_float(q.zero), sc = half_bits_to_float(q.scale);
  for (int p = lo; p < start; ++p) {
    const float code = static_cast<float>(quant_code(value(p), z, sc, bits));
    store(o + static_cast<size_t>(p) * width, __fmaf_rn(sc, code, z));
  }
}

template <typename T>
void launch(const float* x, int width, int group, int bits, ChannelSeqs seqs, int first, int count,
            const int* ws_row, T* out, cudaStream_t stream) {
  if (width < 1 || group < 1 || !(bits == 16 || (bits >= 1 && bits <= 8)))
    throw CudaError("quantize_window_partial: a width, G >= 1 and 1 to 8 or 16 bits");
  if (count <= 0 || group == 1) return;  // G = 1: no position waits in a window
  const dim3 grid(count, (width + kPartialThreads - 1) / kPartialThreads);
  partial_kernel<<<grid, kPartialThreads, 0, stream>>>(x, width, group, bits, seqs, first, ws_row,
                                                       out);
  check(cudaGetLastError(), "quantize_window_partial");
}

}  // namespace

void quantize_window_partial(const float* x, int width, int group, int bits, ChannelSeqs seqs,
                             int first, int count, const int* ws_row, float* out,
                             cudaStream_t stream) {
  launch(x, width, group, bits, seqs, first, count, ws_row, out, stream);
}
void quantize_window_partial(const float* x, int width, int group, int bits, ChannelSeqs seqs,
                             int first, int count, const int* ws_row, bf16* out,
                             cudaStream_t stream) {
  launch(x, width, group, bits, seqs, first, count, ws_row, out, stream);
}

}  // namespace xq::cuda
