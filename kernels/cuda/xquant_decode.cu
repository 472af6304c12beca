// XQuant's fused decode attention (decode_ops.h): a block takes one sequence, one KV head and one
// split of the cached positions. Per tile of 64 positions it dequantizes the packed rows' K input
// into shared memory chunk by chunk, rebuilds the tile's keys for its head with bf16 tensor cores
// (WMMA, fp32 accumulation), adds the bias, applies the k-norm and RoPE, scores the GQA group's
// queries, and adds the softmax-weighted value inputs (dequantized X or V latent) to a per-head
// accumulator; the split holding the end also takes the new row's own key and value. Nothing of
// the past is written to global memory; Wv is applied to the merged mean afterwards.
#include <mma.h>

#include "kernels/cuda/decode_ops.h"
#include "kernels/cuda/split_util.cuh"

namespace xq::cuda {
namespace {

using namespace detail;
namespace wmma = nvcuda::wmma;

constexpr int kTok = 64;         // positions per tile (the rebuild's M)
constexpr int kChunk = 64;       // K-input columns staged per pass
constexpr int kLd = kChunk + 8;  // bf16 row pitch of the staged tiles (bank spread)

struct Packed {  // a row layout's sizes, on the device
  int bits, group, words, groups;
  size_t bytes;
  // Runs of 16 columns starting at the K and V inputs' 16-aligned offsets are whole words in one
  // group (bits 2/4/8, group a multiple of 16, both inputs start on such a run).
  bool fast;
};

// Column j of a packed row (quantizer.h's layout: LSB-first codes, fp16 scales then zeros).
__device__ inline float dequant_at(const uint8_t* row, int j, const Packed& L) {
  if (L.bits == 16) return __half2float(reinterpret_cast<const half*>(row)[j]);
  const uint32_t* w = reinterpret_cast<const uint32_t*>(row);
  const int bit = j * L.bits, wi = bit >> 5, sh = bit & 31;
  uint32_t v = w[wi] >> sh;
  if (sh + L.bits > 32) v |= w[wi + 1] << (32 - sh);
  const float code = static_cast<float>(v & ((1u << L.bits) - 1u));
  const half* scales = reinterpret_cast<const half*>(row + 4 * static_cast<size_t>(L.words));
  const int g = j / L.group;
  return __fmaf_rn(__half2float(scales[g]), code, __half2float(scales[L.groups + g]));
}

// The float of a code < 2^23 without a conversion instruction: its bits under 2^23's exponent.
__device__ inline float code_float(uint32_t code) {
  return __uint_as_float(code | 0x4B000000u) - 8388608.0f;
}

// N consecutive columns from j0 of a packed row of BITS (2, 4 or 8) bits, all in one group, j0 a
// multiple of N (the caller checks Packed::fast): N * BITS <= 32 bits sit in one word, longer runs
// start on a word; one scale and zero.
template <int BITS, int N>
__device__ inline void dequant_run(const uint8_t* row, int j0, const Packed& L, float* out) {
  constexpr int kWords = (N * BITS + 31) / 32;
  constexpr uint32_t kMask = (1u << BITS) - 1u;
  const int bit = j0 * BITS;
  const uint32_t* w = reinterpret_cast<const uint32_t*>(row) + bit / 32;
  uint32_t wv[kWords];
#pragma unroll
  for (int i = 0; i < kWords; ++i) wv[i] = w[i];
  if (kWords == 1) wv[0] >>= bit & 31;
  const half* scales = reinterpret_cast<const half*>(row + 4 * static_cast<size_t>(L.words));
  const int g = j0 / L.group;
  const float s = __half2float(scales[g]), z = __half2float(scales[L.groups + g]);
#pragma unroll
  for (int e = 0; e < N; ++e)
    out[e] = __fmaf_rn(s, code_float((wv[e * BITS / 32] >> (e * BITS % 32)) & kMask), z);
}

// N columns from j0 (dequant_run where the layout allows, column by column otherwise).
template <int N>
__device__ inline void dequant_cols(const uint8_t* row, int j0, const Packed& L, float* out) {
  if (L.fast) {
    switch (L.bits) {
      case 2:
        dequant_run<2, N>(row, j0, L, out);
        return;
      case 4:
        dequant_run<4, N>(row, j0, L, out);
        return;
      case 8:
        dequant_run<8, N>(row, j0, L, out);
        return;
      default:
        break;
    }
  }
#pragma unroll
  for (int e = 0; e < N; ++e) out[e] = dequant_at(row, j0 + e, L);
}

// cos and sin of pos * inv_freq: the angle in double, reduced to [-pi, pi], then fp32.
__device__ inline void rope_angle(int pos, double inv_freq, float* c, float* s) {
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  double a = static_cast<double>(pos) * inv_freq;
  a -= kTwoPi * rint(a / kTwoPi);
  sincosf(static_cast<float>(a), s, c);
}

template <int D>
__host__ __device__ constexpr size_t union_bytes() {
  const size_t stage = sizeof(bf16) * (static_cast<size_t>(kTok) + D) * kLd;
  const size_t keys = sizeof(float) * static_cast<size_t>(kTok) * (D + 4);
  return stage > keys ? stage : keys;
}

template <int D>
size_t xq_smem_bytes(int group, int v_width) {
  return union_bytes<D>() + kTok * sizeof(void*) +
         sizeof(float) * (static_cast<size_t>(group) * D + group * kTok + 3 * kMaxGroup +
                          static_cast<size_t>(group) * v_width);
}

// keys[kTok][D + 4] = rows' K input · wk_headᵀ for the tile's rows (absent rows give zeros).
template <int D>
__device__ void rebuild_keys(const uint8_t* const* rows_s, const XDecodeParams& x, const Packed& L,
                             const bf16* wk, unsigned char* u) {
  constexpr int FW = D / 32;  // fragments per warp along the head dimension
  const int tid = threadIdx.x, warp = tid >> 5;
  const int rb = warp % 4, cb0 = (warp / 4) * FW;
  bf16* a_s = reinterpret_cast<bf16*>(u);
  bf16* b_s = a_s + kTok * kLd;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[FW];
#pragma unroll
  for (int f = 0; f < FW; ++f) wmma::fill_fragment(acc[f], 0.0f);
  for (int k0 = 0; k0 < x.k_width; k0 += kChunk) {
    {  // A: 4 threads per row, 16 columns each, dequantized to bf16
      const int t = tid >> 2, c = (tid & 3) * 16;
      const uint8_t* row = rows_s[t];
      float v[16];
      if (row && k0 + c + 16 <= x.k_width) {
        dequant_cols<16>(row, x.k_col + k0 + c, L, v);
      } else {
#pragma unroll
        for (int e = 0; e < 16; ++e)
          v[e] = row && k0 + c + e < x.k_width ? dequant_at(row, x.k_col + k0 + c + e, L) : 0.0f;
      }
      __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(a_s + t * kLd + c);
#pragma unroll
      for (int e = 0; e < 8; ++e) dst[e] = __floats2bfloat162_rn(v[2 * e], v[2 * e + 1]);
    }
    // B: the head's D weight rows, 8 bf16 per 16-byte load.
    for (int e = tid; e < D * (kChunk / 8); e += kSplitThreads) {
      const int n = e / (kChunk / 8), c = (e % (kChunk / 8)) * 8;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (k0 + c < x.k_width)
        v = *reinterpret_cast<const uint4*>(wk + static_cast<size_t>(n) * x.k_width + k0 + c);
      *reinterpret_cast<uint4*>(b_s + n * kLd + c) = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kChunk; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
      wmma::load_matrix_sync(fa, a_s + rb * 16 * kLd + kk, kLd);
#pragma unroll
      for (int f = 0; f < FW; ++f) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb;
        wmma::load_matrix_sync(fb, b_s + (cb0 + f) * 16 * kLd + kk, kLd);
        wmma::mma_sync(acc[f], fa, fb, acc[f]);
      }
    }
    __syncthreads();  // the next chunk (or the keys) overwrite the staged tiles
  }
  float* keys = reinterpret_cast<float*>(u);
#pragma unroll
  for (int f = 0; f < FW; ++f)
    wmma::store_matrix_sync(keys + rb * 16 * (D + 4) + (cb0 + f) * 16, acc[f], D + 4,
                            wmma::mem_row_major);
  __syncthreads();
}

// Bias, k-norm and RoPE on key row `kr` of position pos (one warp).
template <int D>
__device__ void finish_key(float* kr, int pos, int kvh, const XDecodeParams& x) {
  const int lane = threadIdx.x & 31;
  if (x.bk)
    for (int d = lane; d < D; d += 32) kr[d] += x.bk[kvh * D + d];
  if (x.k_norm) {
    float ss = 0.0f;
    for (int d = lane; d < D; d += 32) ss += kr[d] * kr[d];
    ss = warp_reduce(ss, SumOp<float>());
    const float inv = rsqrtf(ss / D + x.norm_eps);
    for (int d = lane; d < D; d += 32)
      kr[d] *= inv * (x.norm_one_plus ? 1.0f + x.k_norm[d] : x.k_norm[d]);
  }
  __syncwarp();
  for (int e = lane; e < D / 2; e += 32) {
    float c, s;
    rope_angle(pos, x.inv_freq[e], &c, &s);
    const float lo = kr[e], hi = kr[e + D / 2];
    kr[e] = lo * c - hi * s;
    kr[e + D / 2] = hi * c + lo * s;
  }
  __syncwarp();
}

template <int D, int GM>
__global__ void __launch_bounds__(kSplitThreads)
    xquant_decode_kernel(const float* q, const AttnSeq* seqs, const int* tables, XDecodeParams x,
                         Packed L, AttnParams p, SplitPartials out) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int i = blockIdx.z, kvh = blockIdx.y, split = blockIdx.x;
  const int G = p.num_heads / p.num_kv_heads, H = p.num_heads, VW = x.v_width;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  unsigned char* u = smem;
  const uint8_t** rows_s = reinterpret_cast<const uint8_t**>(smem + union_bytes<D>());
  float* q_s = reinterpret_cast<float*>(rows_s + kTok);
  float* p_s = q_s + G * D;
  float* m_s = p_s + G * kTok;
  float* l_s = m_s + kMaxGroup;
  float* corr_s = l_s + kMaxGroup;
  float* acc_s = corr_s + kMaxGroup;

  const AttnSeq s = seqs[i];
  const int r = s.q_row, pos = s.start_pos;
  const int first = p.window > 0 ? max(0, pos - p.window + 1) : 0;
  const SplitRange rg = split_range(first, pos, split, out.splits, kTok);
  const int* table = tables + s.table;
  const bf16* wk = x.wk + static_cast<size_t>(kvh) * D * x.k_width;

  for (int e = tid; e < G * D; e += kSplitThreads)
    q_s[e] = q[(static_cast<size_t>(r) * H + kvh * G) * D + e];
  for (int e = tid; e < G * VW; e += kSplitThreads) acc_s[e] = 0.0f;
  if (tid < kMaxGroup) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.0f;
  }

  for (int c0 = rg.begin; c0 < rg.end; c0 += kTok) {
    const int len = min(kTok, rg.end - c0);
    if (tid < kTok) {
      const int at = c0 + tid;
      rows_s[tid] = tid < len ? x.base + static_cast<size_t>(table[at / kPageRows]) * x.page_bytes +
                                    static_cast<size_t>(at % kPageRows) * L.bytes
                              : nullptr;
    }
    __syncthreads();
    rebuild_keys<D>(rows_s, x, L, wk, u);
    float* keys = reinterpret_cast<float*>(u);
    for (int j = warp; j < kTok; j += kSplitWarps) {
      float* kr = keys + j * (D + 4);
      if (j < len) finish_key<D>(kr, c0 + j, kvh, x);
      for (int g = 0; g < G; ++g) {
        float dot = 0.0f;
        if (j < len)
          for (int d = lane; d < D; d += 32) dot += q_s[g * D + d] * kr[d];
        dot = warp_reduce(dot, SumOp<float>());
        if (lane == 0)
          p_s[g * kTok + j] = j < len ? attn_score(dot, p.scale, p.softcap) : -INFINITY;
      }
    }
    __syncthreads();
    softmax_tile(p_s, kTok, len, G, m_s, l_s, corr_s);
    __syncthreads();
    // The weighted value inputs: a thread per 4 columns, every head of the group.
    for (int c = 4 * tid; c < VW; c += 4 * kSplitThreads) {
      const int n = min(4, VW - c);
      float a[GM][4];
#pragma unroll
      for (int g = 0; g < GM; ++g)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          a[g][e] = g < G && e < n ? acc_s[g * VW + c + e] * corr_s[g] : 0.0f;
#pragma unroll 4
      for (int j = 0; j < len; ++j) {
        float v[4];
        if (n == 4) {
          dequant_cols<4>(rows_s[j], x.v_col + c, L, v);
        } else {
          for (int e = 0; e < 4; ++e)
            v[e] = e < n ? dequant_at(rows_s[j], x.v_col + c + e, L) : 0.0f;
        }
#pragma unroll
        for (int g = 0; g < GM; ++g) {
          if (g < G) {
            const float w = p_s[g * kTok + j];
#pragma unroll
            for (int e = 0; e < 4; ++e) a[g][e] += w * v[e];
          }
        }
      }
#pragma unroll
      for (int g = 0; g < GM; ++g)
        if (g < G)
          for (int e = 0; e < n; ++e) acc_s[g * VW + c + e] = a[g][e];
    }
    __syncthreads();  // the next tile overwrites rows_s, the keys and p_s
  }

  if (split == out.splits - 1) {  // the new row: its own full-precision key and value input
    const float* kn = x.k_new + (static_cast<size_t>(r) * p.num_kv_heads + kvh) * D;
    for (int g = warp; g < G; g += kSplitWarps) {
      float dot = 0.0f;
      for (int d = lane; d < D; d += 32) dot += q_s[g * D + d] * kn[d];
      dot = warp_reduce(dot, SumOp<float>());
      if (lane == 0) p_s[g * kTok] = attn_score(dot, p.scale, p.softcap);
    }
    __syncthreads();
    softmax_tile(p_s, kTok, 1, G, m_s, l_s, corr_s);
    __syncthreads();
    const bf16* vn = x.v_new + static_cast<size_t>(r) * x.v_new_stride;
    for (int c = tid; c < VW; c += kSplitThreads) {
      const float v = __bfloat162float(vn[c]);
      for (int g = 0; g < G; ++g)
        acc_s[g * VW + c] = acc_s[g * VW + c] * corr_s[g] + p_s[g * kTok] * v;
    }
    __syncthreads();
  }

  for (int e = tid; e < G * VW; e += kSplitThreads) {
    const int g = e / VW, c = e % VW;
    out.acc[partial_index(r, H, kvh * G + g, out.splits, split) * VW + c] = acc_s[e];
  }
  if (tid < G) {
    const size_t at = partial_index(r, H, kvh * G + tid, out.splits, split) * 2;
    out.ml[at] = m_s[tid];
    out.ml[at + 1] = l_s[tid];
  }
}

template <int D, int GM>
void launch_xq(const float* q, int rows, const AttnSeq* seqs, const int* tables,
               const XDecodeParams& x, const Packed& L, const AttnParams& p, SplitPartials out,
               cudaStream_t stream) {
  const size_t smem = xq_smem_bytes<D>(p.num_heads / p.num_kv_heads, x.v_width);
  static bool raised = false;
  if (!raised) {
    check(cudaFuncSetAttribute(xquant_decode_kernel<D, GM>,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024),
          "xquant_decode smem");
    raised = true;
  }
  const dim3 grid(out.splits, p.num_kv_heads, rows);
  xquant_decode_kernel<D, GM><<<grid, kSplitThreads, smem, stream>>>(q, seqs, tables, x, L, p, out);
}

template <int D>
void dispatch_group(const float* q, int rows, const AttnSeq* seqs, const int* tables,
                    const XDecodeParams& x, const Packed& L, const AttnParams& p, SplitPartials out,
                    cudaStream_t stream) {
  const int G = p.num_heads / p.num_kv_heads;
  if (G <= 1)
    launch_xq<D, 1>(q, rows, seqs, tables, x, L, p, out, stream);
  else if (G <= 2)
    launch_xq<D, 2>(q, rows, seqs, tables, x, L, p, out, stream);
  else if (G <= 4)
    launch_xq<D, 4>(q, rows, seqs, tables, x, L, p, out, stream);
  else if (G <= 8)
    launch_xq<D, 8>(q, rows, seqs, tables, x, L, p, out, stream);
  else
    launch_xq<D, 16>(q, rows, seqs, tables, x, L, p, out, stream);
}

size_t smem_for(int head_dim, int group, int v_width) {
  switch (head_dim) {
    case 64:
      return xq_smem_bytes<64>(group, v_width);
    case 128:
      return xq_smem_bytes<128>(group, v_width);
    case 256:
      return xq_smem_bytes<256>(group, v_width);
    default:
      return SIZE_MAX;
  }
}

}  // namespace

bool xquant_decode_supported(const AttnParams& p, const XDecodeParams& x) {
  if (p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0) return false;
  const int G = p.num_heads / p.num_kv_heads, b = x.layout.bits;
  return G <= kMaxGroup && (b == 2 || b == 3 || b == 4 || b == 8 || b == 16) && x.k_width > 0 &&
         x.k_width % 8 == 0 && x.v_width > 0 && smem_for(p.head_dim, G, x.v_width) <= 227 * 1024;
}

void xquant_decode_splits(const float* q, int rows, const AttnSeq* seqs, const int* tables,
                          const XDecodeParams& x, AttnParams p, SplitPartials out,
                          cudaStream_t stream) {
  if (rows <= 0) return;
  if (!xquant_decode_supported(p, x))
    throw CudaError("xquant_decode_splits: head_dim " + std::to_string(p.head_dim) + ", heads " +
                    std::to_string(p.num_heads) + "/" + std::to_string(p.num_kv_heads) + ", bits " +
                    std::to_string(x.layout.bits) + ", widths " + std::to_string(x.k_width) + "/" +
                    std::to_string(x.v_width) + " not supported");
  if (out.splits < 1 || out.splits > kMaxSplits || rows > 65535)
    throw CudaError("xquant_decode_splits: splits must be in [1, 64], rows <= 65535");
  const int b = x.layout.bits;
  const bool fast = (b == 2 || b == 4 || b == 8) && x.layout.group % 16 == 0 && x.k_col % 16 == 0 &&
                    x.v_col % 16 == 0;
  const Packed L{b,
                 x.layout.group,
                 static_cast<int>(x.layout.words()),
                 static_cast<int>(x.layout.groups()),
                 x.layout.bytes(),
                 fast};
  switch (p.head_dim) {
    case 64:
      dispatch_group<64>(q, rows, seqs, tables, x, L, p, out, stream);
      break;
    case 128:
      dispatch_group<128>(q, rows, seqs, tables, x, L, p, out, stream);
      break;
    default:
      dispatch_group<256>(q, rows, seqs, tables, x, L, p, out, stream);
      break;
  }
  check(cudaGetLastError(), "xquant_decode_splits");
}

}  // namespace xq::cuda
