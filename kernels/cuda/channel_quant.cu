// Per-channel blocks in pages (channel_ops.h): one thread per channel finds a block's range in
// order, as the CPU's sequential loop does, then one thread per output word packs the codes
// that overlap it; reads dequantize one value per thread.
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

constexpr int kChannelThreads = 256;

// The layout's sizes, taken on the host (ChannelBlockLayout's members are host functions).
struct Shape {
  int width, bits, group, per_block, per_page, unit_rows, params;
  size_t unit_bytes, params_bytes;
};

Shape shape_of(const ChannelBlockLayout& l) {
  return {l.width,
          l.bits,
          l.group,
          l.pages_per_block(),
          l.blocks_per_page(),
          l.unit_rows(),
          l.params_per_page(),
          l.unit_bytes(),
          l.params_bytes()};
}

__device__ inline uint8_t* page_at(const ChannelStore& st, const ChannelSeqs& s, int i, int entry) {
  return st.pages + static_cast<size_t>(s.tables[s.seqs[i].table + entry]) * st.page_bytes;
}

__device__ inline half* window_of(const ChannelStore& st, const ChannelSeqs& s, int i) {
  return reinterpret_cast<half*>(st.windows + static_cast<size_t>(s.slots[i]) * st.slot_bytes);
}

// Channel c of block b: its scale (zero at + sh.params) among the parameters of a page.
__device__ inline half* param_of(const ChannelStore& st, const Shape& sh, const ChannelSeqs& s,
                                 int i, int b, int c) {
  if (sh.group >= kPageRows) {
    const int k = c / sh.params;
    return reinterpret_cast<half*>(page_at(st, s, i, b * sh.per_block + k)) + (c - k * sh.params);
  }
  return reinterpret_cast<half*>(page_at(st, s, i, b * sh.group / kPageRows)) +
         (b % sh.per_page) * sh.width + c;
}

// The words of the code unit holding position p.
__device__ inline uint32_t* unit_of(const ChannelStore& st, const Shape& sh, const ChannelSeqs& s,
                                    int i, int p) {
  uint8_t* page = page_at(st, s, i, p / kPageRows);
  const int unit = (p % kPageRows) / sh.unit_rows;
  return reinterpret_cast<uint32_t*>(page + sh.params_bytes + unit * sh.unit_bytes);
}

// The value a block quantizes at position p, channel c: from the window before the step, else
// the new row rounded to fp16 (the CPU keeps the unfilled block in fp16).
__device__ inline float block_value(const float* x, int x_stride, const half* win, const Shape& sh,
                                    const AttnSeq& a, int p, int c) {
  if (p < a.start_pos) return __half2float(win[static_cast<size_t>(p % sh.group) * sh.width + c]);
  const float v = x[static_cast<size_t>(a.q_row + p - a.start_pos) * x_stride + c];
  return __half2float(__float2half_rn(v));
}

__global__ void block_params_kernel(const float* x, int x_stride, ChannelStore st, Shape sh,
                                    ChannelSeqs s, const int* blocks) {
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= sh.width) return;
  const int i = blocks[2 * blockIdx.x], b = blocks[2 * blockIdx.x + 1];
  const AttnSeq a = s.seqs[i];
  const half* win = window_of(st, s, i);
  float lo = INFINITY, hi = -INFINITY;
  for (int t = 0; t < sh.group; ++t)
    widen(block_value(x, x_stride, win, sh, a, b * sh.group + t, c), lo, hi);
  const GroupParams q = group_params(lo, hi, sh.bits);
  half* scale = param_of(st, sh, s, i, b, c);
  const int per_page = sh.group >= kPageRows ? sh.params : sh.per_page * sh.width;
  scale[0] = __ushort_as_half(q.scale);
  scale[per_page] = __ushort_as_half(q.zero);
}

// Block (j, k): the code unit of page k of block j (G >= 16), or block j's unit in its page.
__global__ void block_codes_kernel(const float* x, int x_stride, ChannelStore st, Shape sh,
                                   ChannelSeqs s, const int* blocks) {
  const int j = blockIdx.x / sh.per_block, k = blockIdx.x % sh.per_block;
  const int i = blocks[2 * j], b = blocks[2 * j + 1];
  const AttnSeq a = s.seqs[i];
  const half* win = window_of(st, s, i);
  const int p0 = b * sh.group + k * kPageRows;
  uint32_t* words = unit_of(st, sh, s, i, p0);
  const int codes = sh.unit_rows * sh.width, bits = sh.bits;
  const int per_page = sh.group >= kPageRows ? sh.params : sh.per_page * sh.width;
  const int nwords = static_cast<int>(sh.unit_bytes / 4);
  for (int w = threadIdx.x; w < nwords; w += blockDim.x) {
    const long long first_bit = 32LL * w;
    const int q0 = static_cast<int>(first_bit / bits);
    const int q1 = min(codes - 1, static_cast<int>((first_bit + 31) / bits));
    uint32_t word = 0;
    for (int q = q0; q <= q1; ++q) {
      const int r = q / sh.width, c = q % sh.width;
      const half* par = param_of(st, sh, s, i, b, c);
      const float sc = __half2float(par[0]), ze = __half2float(par[per_page]);
      const uint32_t code =
          quant_code(block_value(x, x_stride, win, sh, a, p0 + r, c), ze, sc, bits);
      const int shift = static_cast<int>(static_cast<long long>(q) * bits - first_bit);
      word |= shift >= 0 ? code << shift : code >> -shift;
    }
    words[w] = word;
  }
}

// New rows at or past `keep_from` of their sequence go to its window (row p % G).
__global__ void window_write_kernel(const float* x, int x_stride, const int* row_seq,
                                    ChannelStore st, Shape sh, ChannelSeqs s, bool ring) {
  const int r = blockIdx.x;
  const int i = row_seq[r];
  const AttnSeq a = s.seqs[i];
  const int p = a.start_pos + r - a.q_row, end = a.start_pos + a.n;
  const int keep_from = ring ? end - sh.group : end - end % sh.group;
  if (p < keep_from) return;
  half* win = window_of(st, s, i) + static_cast<size_t>(p % sh.group) * sh.width;
  for (int c = threadIdx.x; c < sh.width; c += blockDim.x)
    win[c] = __float2half_rn(x[static_cast<size_t>(r) * x_stride + c]);
}

template <typename T>
__device__ inline T out_value(float v);
template <>
__device__ inline bf16 out_value<bf16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ inline half out_value<half>(float v) {
  return __float2half_rn(v);
}

// fp32 outputs are XQuant-CL's accumulator: the value added (or written, accumulate false).
template <typename T>
__device__ inline void put(T* o, float v, bool) {
  *o = out_value<T>(v);
}
template <>
__device__ inline void put<float>(float* o, float v, bool accumulate) {
  *o = accumulate ? *o + v : v;
}

// through_step: the blocks filled by the end of the step (start + n; read after the step
// quantized them), else those filled before it.
template <typename T>
__global__ void read_blocks_kernel(ChannelStore st, Shape sh, ChannelSeqs s, const int* seq,
                                   const int* pos, T* out, int out_stride, bool through_step,
                                   bool accumulate) {
  const int r = blockIdx.x, i = seq[r], p = pos[r];
  if (i < 0 || p < 0) return;
  const int end = s.seqs[i].start_pos + (through_step ? s.seqs[i].n : 0);
  if (p >= end - end % sh.group) return;
  const int b = p / sh.group, bits = sh.bits;
  const uint32_t* words = unit_of(st, sh, s, i, p);
  const int per_page = sh.group >= kPageRows ? sh.params : sh.per_page * sh.width;
  const int nwords = static_cast<int>(sh.unit_bytes / 4);
  const uint32_t mask = (1u << bits) - 1;
  T* o = out + static_cast<size_t>(r) * out_stride;
  for (int c = threadIdx.x; c < sh.width; c += blockDim.x) {
    const size_t bit = static_cast<size_t>((p % sh.unit_rows) * sh.width + c) * bits;
    const size_t w = bit / 32;
    uint64_t pair = words[w];
    if (w + 1 < static_cast<size_t>(nwords)) pair |= static_cast<uint64_t>(words[w + 1]) << 32;
    const float code = static_cast<float>((pair >> (bit % 32)) & mask);
    const half* par = param_of(st, sh, s, i, b, c);
    put<T>(o + c, __fmaf_rn(__half2float(par[0]), code, __half2float(par[per_page])), accumulate);
  }
}

// Thread per channel of one sequence's window rows; a quantized read first finds the partial
// block's range, then writes zero + scale * code per row.
template <typename T>
__global__ void read_window_kernel(ChannelStore st, Shape sh, ChannelSeqs s, int first,
                                   const int* ws_row, WindowRead how, T* out, int out_stride) {
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= sh.width) return;
  const int i = first + blockIdx.x;
  const int start = s.seqs[i].start_pos;
  const int lo = how.ring ? max(0, start - sh.group) : start - start % sh.group;
  if (lo >= start) return;
  const half* win = window_of(st, s, i);
  T* o = out + static_cast<size_t>(ws_row[blockIdx.x]) * out_stride + c;
  auto value = [&](int p) {
    return __half2float(win[static_cast<size_t>(p % sh.group) * sh.width + c]);
  };
  if (!how.quantized) {
    for (int p = lo; p < start; ++p)
      o[static_cast<size_t>(p) * out_stride] = out_value<T>(value(p));
    return;
  }
  float vlo = INFINITY, vhi = -INFINITY;
  for (int p = lo; p < start; ++p) widen(value(p), vlo, vhi);
  const GroupParams q = group_params(vlo, vhi, sh.bits);
  const float z = half_bits_to_float(q.zero), sc = half_bits_to_float(q.scale);
  for (int p = lo; p < start; ++p) {
    const float code = static_cast<float>(quant_code(value(p), z, sc, sh.bits));
    o[static_cast<size_t>(p) * out_stride] = out_value<T>(__fmaf_rn(sc, code, z));
  }
}

__global__ void gather_ring_kernel(const float* x, int x_stride, ChannelStore st, Shape sh,
                                   ChannelSeqs s, const int* spill, float* out) {
  const int j = blockIdx.x, i = spill[2 * j], p = spill[2 * j + 1];
  const AttnSeq a = s.seqs[i];
  const half* win = window_of(st, s, i);
  for (int c = threadIdx.x; c < sh.width; c += blockDim.x)
    out[static_cast<size_t>(j) * sh.width + c] = block_value(x, x_stride, win, sh, a, p, c);
}

void check_store(const ChannelStore& st, const char* what) {
  const ChannelBlockLayout& l = st.layout;
  if (l.bits != 2 && l.bits != 3 && l.bits != 4 && l.bits != 8)
    throw CudaError(std::string(what) + ": bits must be 2, 3, 4 or 8, got " +
                    std::to_string(l.bits));
  if (!l.group_fits_pages())
    throw CudaError(std::string(what) + ": group " + std::to_string(l.group) +
                    " is neither a multiple nor a divisor of 16");
  if (reinterpret_cast<uintptr_t>(st.pages) % 4 != 0 || st.page_bytes % 4 != 0 ||
      reinterpret_cast<uintptr_t>(st.windows) % 2 != 0 || st.slot_bytes % 2 != 0)
    throw CudaError(std::string(what) + ": pages must be 4-byte and windows 2-byte aligned");
}

unsigned channel_chunks(int width) {
  return static_cast<unsigned>((width + kChannelThreads - 1) / kChannelThreads);
}

template <typename T>
void read_blocks(ChannelStore st, ChannelSeqs s, const int* seq, const int* pos, int rows, T* out,
                 int out_stride, cudaStream_t stream, bool through_step = false,
                 bool accumulate = false) {
  check_store(st, "read_channel_blocks");
  if (rows <= 0) return;
  read_blocks_kernel<T><<<rows, kChannelThreads, 0, stream>>>(
      st, shape_of(st.layout), s, seq, pos, out, out_stride, through_step, accumulate);
  check(cudaGetLastError(), "read_channel_blocks");
}

template <typename T>
void read_window(ChannelStore st, ChannelSeqs s, int first, int count, const int* ws_row,
                 WindowRead how, T* out, int out_stride, cudaStream_t stream) {
  if (count <= 0) return;
  const dim3 grid(count, channel_chunks(st.layout.width));
  read_window_kernel<T><<<grid, kChannelThreads, 0, stream>>>(st, shape_of(st.layout), s, first,
                                                              ws_row, how, out, out_stride);
  check(cudaGetLastError(), "read_channel_window");
}

}  // namespace

void quantize_channel_blocks(const float* x, int x_stride, ChannelStore store, ChannelSeqs seqs,
                             const int* blocks, int num_blocks, cudaStream_t stream) {
  check_store(store, "quantize_channel_blocks");
  if (num_blocks <= 0) return;
  const Shape sh = shape_of(store.layout);
  const dim3 grid(num_blocks, channel_chunks(sh.width));
  block_params_kernel<<<grid, kChannelThreads, 0, stream>>>(x, x_stride, store, sh, seqs, blocks);
  block_codes_kernel<<<num_blocks * sh.per_block, kChannelThreads, 0, stream>>>(x, x_stride, store,
                                                                                sh, seqs, blocks);
  check(cudaGetLastError(), "quantize_channel_blocks");
}

void append_channel_rows(const float* x, int x_stride, int rows, const int* row_seq,
                         ChannelStore store, ChannelSeqs seqs, const int* blocks, int num_blocks,
                         cudaStream_t stream) {
  check_store(store, "append_channel_rows");
  if (rows <= 0) return;
  quantize_channel_blocks(x, x_stride, store, seqs, blocks, num_blocks, stream);
  // After the blocks: a block filled this step reads window rows the new rows may overwrite.
  window_write_kernel<<<rows, kChannelThreads, 0, stream>>>(x, x_stride, row_seq, store,
                                                            shape_of(store.layout), seqs, false);
  check(cudaGetLastError(), "append_channel_rows");
}

void read_channel_blocks(ChannelStore store, ChannelSeqs seqs, const int* seq, const int* pos,
                         int rows, bf16* out, int out_stride, cudaStream_t stream) {
  read_blocks(store, seqs, seq, pos, rows, out, out_stride, stream);
}
void read_channel_blocks(ChannelStore store, ChannelSeqs seqs, const int* seq, const int* pos,
                         int rows, half* out, int out_stride, cudaStream_t stream) {
  read_blocks(store, seqs, seq, pos, rows, out, out_stride, stream);
}

void add_step_blocks(ChannelStore store, ChannelSeqs seqs, const int* seq, const int* pos, int rows,
                     float* acc, int acc_stride, bool accumulate, cudaStream_t stream) {
  read_blocks(store, seqs, seq, pos, rows, acc, acc_stride, stream, true, accumulate);
}
void read_step_blocks(ChannelStore store, ChannelSeqs seqs, const int* seq, const int* pos,
                      int rows, bf16* out, int out_stride, cudaStream_t stream) {
  read_blocks(store, seqs, seq, pos, rows, out, out_stride, stream, true);
}

void read_channel_window(ChannelStore store, ChannelSeqs seqs, int first, int count,
                         const int* ws_row, WindowRead how, bf16* out, int out_stride,
                         cudaStream_t stream) {
  read_window(store, seqs, first, count, ws_row, how, out, out_stride, stream);
}
void read_channel_window(ChannelStore store, ChannelSeqs seqs, int first, int count,
                         const int* ws_row, WindowRead how, half* out, int out_stride,
                         cudaStream_t stream) {
  read_window(store, seqs, first, count, ws_row, how, out, out_stride, stream);
}

void gather_ring_rows(const float* x, int x_stride, ChannelStore store, ChannelSeqs seqs,
                      const int* spill, int num_spill, float* out, cudaStream_t stream) {
  if (num_spill <= 0) return;
  gather_ring_kernel<<<num_spill, kChannelThreads, 0, stream>>>(
      x, x_stride, store, shape_of(store.layout), seqs, spill, out);
  check(cudaGetLastError(), "gather_ring_rows");
}

void write_ring_rows(const float* x, int x_stride, int rows, const int* row_seq, ChannelStore store,
                     ChannelSeqs seqs, cudaStream_t stream) {
  if (rows <= 0) return;
  window_write_kernel<<<rows, kChannelThreads, 0, stream>>>(x, x_stride, row_seq, store,
                                                            shape_of(store.layout), seqs, true);
  check(cudaGetLastError(), "write_ring_rows");
}

}  // namespace xq::cuda
