// XQuant-CL -ch windows and block deltas (cl_channel_ops.h): one block per row, threads across it.
#include "kernels/cuda/cl_channel_ops.h"
#include "kernels/cuda/cl_row.cuh"
#include "kernels/cuda/launch_util.cuh"

namespace xq::cuda {
namespace {

__device__ inline float window_value(const ClWindow& w, int slot, int p, int c) {
  const size_t at = static_cast<size_t>(p % w.group) * w.width + c;
  const uint8_t* base = w.base + static_cast<size_t>(slot) * w.slot_bytes;
  if (w.fp32) return reinterpret_cast<const float*>(base)[at];
  return __half2float(reinterpret_cast<const half*>(base)[at]);
}

// A new row's value as the window keeps it.
__device__ inline float kept(const ClWindow& w, float v) {
  return w.fp32 ? v : __half2float(__float2half_rn(v));
}

__global__ void block_deltas_kernel(const float* src, int src_stride, ClWindow win,
                                    ChannelSeqs seqs, const int* blocks, int first, int seq_begin,
                                    const int* ws_row, const float* acc, bool subtract,
                                    float* out) {
  const int G = win.group, j = blockIdx.x / G, t = blockIdx.x % G;
  const int i = blocks[2 * j], p = blocks[2 * j + 1] * G + t;
  const AttnSeq a = seqs.seqs[i];
  const int W = win.width;
  const bool in_window = p < a.start_pos;
  const float* s =
      in_window ? src : src + static_cast<size_t>(a.q_row + p - a.start_pos) * src_stride;
  const float* below = acc + static_cast<size_t>(ws_row[i - seq_begin] + p) * W;
  float* o = out + (static_cast<size_t>(first + j) * G + t) * W;
  for (int c = threadIdx.x; c < W; c += blockDim.x) {
    const float v = in_window ? window_value(win, seqs.slots[i], p, c) : kept(win, s[c]);
    o[c] = subtract ? v - below[c] : v;
  }
}

__global__ void window_rows_kernel(ClWindow win, ChannelSeqs seqs, int first, const int* ws_row,
                                   const float* norm, float eps, bool one_plus, bf16* out) {
  __shared__ double scratch[32];
  const int i = first + blockIdx.x;
  const int start = seqs.seqs[i].start_pos, p = start - start % win.group + blockIdx.y;
  if (p >= start) return;  // the whole block returns: no thread reaches the norm's barrier
  const int slot = seqs.slots[i];
  bf16* o = out + static_cast<size_t>(ws_row[blockIdx.x] + p) * win.width;
  detail::write_rebuilt_row([&](int c) { return window_value(win, slot, p, c); }, win.width, norm,
                            eps, one_plus, o, scratch);
}

__global__ void window_write_kernel(const float* src, int src_stride, int row_begin,
                                    const int* row_seq, ClWindow win, ChannelSeqs seqs) {
  const int r = row_begin + blockIdx.x, i = row_seq[r];
  const AttnSeq a = seqs.seqs[i];
  const int p = a.start_pos + r - a.q_row, end = a.start_pos + a.n;
  if (p < end - end % win.group) return;
  uint8_t* base = win.base + static_cast<size_t>(seqs.slots[i]) * win.slot_bytes;
  const size_t at = static_cast<size_t>(p % win.group) * win.width;
  const float* s = src + static_cast<size_t>(r) * src_stride;
  for (int c = threadIdx.x; c < win.width; c += blockDim.x) {
    if (win.fp32)
      reinterpret_cast<float*>(base)[at + c] = s[c];
    else
      reinterpret_cast<half*>(base)[at + c] = __float2half_rn(s[c]);
  }
}

// Window position t of sequence first + blockIdx.x, one block per (sequence, t): its position
// p, or -1 past the sequence's window positions (the whole block returns together).
__device__ inline int window_position(const ChannelSeqs& seqs, int first, int group) {
  const int start = seqs.seqs[first + blockIdx.x].start_pos;
  const int p = start - start % group + blockIdx.y;
  return p < start ? p : -1;
}

__global__ void window_deltas_kernel(ClWindow win, ChannelSeqs seqs, int first, const int* ws_row,
                                     const float* acc, bool subtract, float* out) {
  const int p = window_position(seqs, first, win.group);
  if (p < 0) return;
  const int slot = seqs.slots[first + blockIdx.x];
  const size_t r = static_cast<size_t>(ws_row[blockIdx.x] + p) * win.width;
  for (int c = threadIdx.x; c < win.width; c += blockDim.x) {
    const float v = window_value(win, slot, p, c);
    out[r + c] = subtract ? v - acc[r + c] : v;
  }
}

__global__ void window_add_kernel(const float* acc, int width, int group, ChannelSeqs seqs,
                                  int first, const int* ws_row, float* part) {
  const int p = window_position(seqs, first, group);
  if (p < 0) return;
  const size_t r = static_cast<size_t>(ws_row[blockIdx.x] + p) * width;
  for (int c = threadIdx.x; c < width; c += blockDim.x) part[r + c] += acc[r + c];
}

__global__ void window_partial_rows_kernel(const float* part, int width, int group,
                                           ChannelSeqs seqs, int first, const int* ws_row,
                                           const float* norm, float eps, bool one_plus, bf16* out,
                                           float* acc) {
  __shared__ double scratch[32];
  const int p = window_position(seqs, first, group);
  if (p < 0) return;
  const size_t r = static_cast<size_t>(ws_row[blockIdx.x] + p) * width;
  const AttnSeq a = seqs.seqs[first + blockIdx.x];
  // The step fills the block: every layer of the chain quantized it, acc holds its A_l.
  const bool filled = a.start_pos + a.n >= p - p % group + group;
  if (!filled) {
    for (int c = threadIdx.x; c < width; c += blockDim.x) acc[r + c] = part[r + c];
  }
  if (out != nullptr) {
    detail::write_rebuilt_row([&](int c) { return part[r + c]; }, width, norm, eps, one_plus,
                              out + r, scratch);
  }
}

void check_window(const ClWindow& w, const char* what) {
  const size_t align = w.fp32 ? 4 : 2;
  if (w.group < 1 || w.width < 1 || reinterpret_cast<uintptr_t>(w.base) % align != 0 ||
      w.slot_bytes % align != 0)
    throw CudaError(std::string(what) + ": a window needs G >= 1, a width, and " +
                    std::to_string(align) + "-byte aligned rows");
}

}  // namespace

void cl_block_deltas(const float* src, int src_stride, ClWindow win, ChannelSeqs seqs,
                     const int* blocks, int count, int first, int seq_begin, const int* ws_row,
                     const float* acc, bool subtract, float* out, cudaStream_t stream) {
  check_window(win, "cl_block_deltas");
  if (count <= 0) return;
  block_deltas_kernel<<<count * win.group, detail::kThreads, 0, stream>>>(
      src, src_stride, win, seqs, blocks, first, seq_begin, ws_row, acc, subtract, out);
  check(cudaGetLastError(), "cl_block_deltas");
}

void cl_window_rows(ClWindow win, ChannelSeqs seqs, int first, int count, const int* ws_row,
                    const float* norm, float eps, bool one_plus, bf16* out, cudaStream_t stream) {
  check_window(win, "cl_window_rows");
  if (count <= 0 || win.group <= 1) return;  // G = 1: no position ever waits in a window
  const dim3 grid(count, win.group - 1);
  window_rows_kernel<<<grid, detail::kThreads, 0, stream>>>(win, seqs, first, ws_row, norm, eps,
                                                            one_plus, out);
  check(cudaGetLastError(), "cl_window_rows");
}

void cl_window_deltas(ClWindow win, ChannelSeqs seqs, int first, int count, const int* ws_row,
                      const float* acc, bool subtract, float* out, cudaStream_t stream) {
  check_window(win, "cl_window_deltas");
  if (count <= 0 || win.group <= 1) return;
  const dim3 grid(count, win.group - 1);
  window_deltas_kernel<<<grid, detail::kThreads, 0, stream>>>(win, seqs, first, ws_row, acc,
                                                              subtract, out);
  check(cudaGetLastError(), "cl_window_deltas");
}

void cl_window_add(const float* acc, int width, int group, ChannelSeqs seqs, int first, int count,
                   const int* ws_row, float* part, cudaStream_t stream) {
  if (count <= 0 || group <= 1) return;
  const dim3 grid(count, group - 1);
  window_add_kernel<<<grid, detail::kThreads, 0, stream>>>(acc, width, group, seqs, first, ws_row,
                                                           part);
  check(cudaGetLastError(), "cl_window_add");
}

void cl_window_partial_rows(const float* part, int width, int group, ChannelSeqs seqs, int first,
                            int count, const int* ws_row, const float* norm, float eps,
                            bool one_plus, bf16* out, float* acc, cudaStream_t stream) {
  if (count <= 0 || group <= 1) return;
  const dim3 grid(count, group - 1);
  window_partial_rows_kernel<<<grid, detail::kThreads, 0, stream>>>(
      part, width, group, seqs, first, ws_row, norm, eps, one_plus, out, acc);
  check(cudaGetLastError(), "cl_window_partial_rows");
}

void cl_window_write(const float* src, int src_stride, int row_begin, int n, const int* row_seq,
                     ClWindow win, ChannelSeqs seqs, cudaStream_t stream) {
  check_window(win, "cl_window_write");
  if (n <= 0) return;
  window_write_kernel<<<n, detail::kThreads, 0, stream>>>(src, src_stride, row_begin, row_seq, win,
                                                          seqs);
  check(cudaGetLastError(), "cl_window_write");
}

}  // namespace xq::cuda
