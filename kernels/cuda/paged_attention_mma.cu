// Paged attention on the tensor cores (see decode_ops.h for the contract): a block takes one query
// row, one KV head and one split, and treats the GQA group's query heads as the rows of a 16-row
// fp16 tile, so Q Kᵀ and P V are WMMA products with fp32 accumulation and the online softmax runs
// between them on 16 x TILE scores. Where the pages allow 16-byte copies, the next tile's K and V
// are copied asynchronously into a second buffer while this tile is scored. With `past_rope`
// (XQuant's rebuilt workspace), the rows of positions cached before the step hold the rebuild's
// bf16 K without RoPE and bf16 V: the staged tile is rotated and converted to fp16 in shared
// memory, which spares a pass over the whole workspace. With `fold` (the GQA latent's values),
// P V is taken over the rows' V latent instead, VW of its columns per block (the block's scores
// are recomputed for each VW-wide slice), and the merged weighted latent is projected by Wv
// afterwards: V is never rebuilt.
#include <mma.h>

#include "kernels/cuda/page_tiles.cuh"
#include "kernels/cuda/paged_attention_mma.h"
#include "kernels/cuda/rope_math.cuh"
#include "kernels/cuda/split_util.cuh"

namespace xq::cuda {
namespace {

using namespace detail;

constexpr int kMmaRows = 16;  // the query heads of a GQA group, padded to one WMMA tile
// Shared-memory rows are padded by 16 bytes: with rows a multiple of 128 bytes apart, the
// fragment loads of a column of rows all hit one bank.
constexpr int kPadHalves = 8, kPadFloats = 4;

// Shared memory: q [16][D] (fp16), BUFS x the tile's K rows [TILE][D] and V rows [TILE][VD]
// (fp16; VD = D, or the fold's VW), the scores' exponentials [16][TILE] (fp16), scores
// [16][TILE] (fp32), the output accumulator [16][VD] (fp32), and m, l per row.
template <int TILE, int BUFS>
size_t mma_smem_bytes(int dim, int vdim) {
  const size_t dh = static_cast<size_t>(dim) + kPadHalves, vh = vdim + kPadHalves;
  return sizeof(half) * (kMmaRows * dh + BUFS * TILE * (dh + vh) + kMmaRows * (TILE + kPadHalves)) +
         sizeof(float) * (kMmaRows * (TILE + kPadFloats) + kMmaRows * (vdim + kPadFloats) +
                          2 * kMmaRows);
}

// The V-latent slice [col0 + vc * VW, + VW) of the tile's rows, through the same page table as K
// (16-byte copies: the caller checked the alignment).
template <int VW>
__device__ void stage_fold_async(const int* table, const FoldRows& fr, int vc, int c0, int len,
                                 half* v_s, int ldv) {
  constexpr int vecs = VW / 8;
  for (int e = threadIdx.x; e < len * vecs; e += kSplitThreads) {
    const int j = e / vecs, c = (e % vecs) * 8, at = c0 + j;
    const size_t off = static_cast<size_t>(table[at / kPageRows]) * fr.page_stride +
                       static_cast<size_t>(at % kPageRows) * fr.row_stride + fr.col0 + vc * VW + c;
    __pipeline_memcpy_async(v_s + j * ldv + c, fr.x + off, 16);
  }
}

template <int VEC, int TILE, int BUFS, int VW>
__device__ void load_tile(const int* table, const KvPages& kv, const FoldRows& fr, int vc, int kvh,
                          int D, int c0, int len, half* k_s, half* v_s, int ld, int ldv) {
  if constexpr (VW > 0) {
    stage_tile_async(table, kv, kvh, D, c0, len, k_s, nullptr, ld);
    stage_fold_async<VW>(table, fr, vc, c0, len, v_s, ldv);
    __pipeline_commit();
  } else if constexpr (BUFS == 2) {
    stage_tile_async(table, kv, kvh, D, c0, len, k_s, v_s, ld);
    __pipeline_commit();
  } else {
    stage_tile<VEC>(table, kv, kvh, D, c0, len, k_s, v_s, ld);
  }
  // Rows past the split's end: zero weights must not meet stale (or never written) values. The
  // buffer is not being read: the last reads of it ended at a barrier.
  for (int e = len * ldv + threadIdx.x; e < TILE * ldv; e += kSplitThreads)
    v_s[e] = __float2half_rn(0.0f);
}

__device__ inline half bf16_bits_to_half(const half& h) {
  return __float2half_rn(__bfloat162float(reinterpret_cast<const bf16&>(h)));
}

// Rows [0, past) of a staged tile (positions c0 + j) from bf16 without RoPE to fp16 with it (K),
// and, with v_s, from bf16 to fp16 (V), in place: a thread owns a rotated pair and the two V
// values beside it.
__device__ void rope_past_rows(half* k_s, half* v_s, int ld, int D, int c0, int past,
                               const RopeAngles& ra) {
  const int hd2 = D / 2;
  for (int e = threadIdx.x; e < past * hd2; e += kSplitThreads) {
    const int j = e / hd2, i = e % hd2;
    const float2 cs = rope_cos_sin(ra, c0 + j, i, hd2);
    half* k = k_s + j * ld;
    const float lo = __bfloat162float(reinterpret_cast<const bf16*>(k)[i]);
    const float hi = __bfloat162float(reinterpret_cast<const bf16*>(k)[i + hd2]);
    k[i] = __float2half_rn(lo * cs.x - hi * cs.y);
    k[i + hd2] = __float2half_rn(hi * cs.x + lo * cs.y);
    if (v_s) {
      half* v = v_s + j * ld;
      v[i] = bf16_bits_to_half(v[i]);
      v[i + hd2] = bf16_bits_to_half(v[i + hd2]);
    }
  }
}

// Blocks: (split, KV head, row); with the fold, (KV head, split x VW-slice, row), so that the KV
// heads reading one slice of the same rows run side by side and share it through L2.
template <int VEC, int TILE, int BUFS, int VW>
__global__ void __launch_bounds__(kSplitThreads)
    paged_attention_mma_kernel(const float* q, const int* row_seq, const AttnSeq* seqs,
                               const int* tables, KvPages kv, AttnParams p, SplitPartials out,
                               RopeAngles past_rope, bool rope_past, FoldRows fr) {
  pdl_wait();
  pdl_launch_dependents();
  using namespace nvcuda;
  extern __shared__ __align__(128) unsigned char smem[];
  const int chunks = VW > 0 ? fr.width / VW : 1;
  const int r = blockIdx.z;
  const int kvh = VW > 0 ? blockIdx.x : blockIdx.y;
  const int split = VW > 0 ? blockIdx.y / chunks : blockIdx.x;
  const int vc = VW > 0 ? blockIdx.y % chunks : 0;
  const int D = p.head_dim, G = p.num_heads / p.num_kv_heads, H = p.num_heads;
  const int VD = VW > 0 ? VW : D;               // accumulator columns of this block
  const int width = VW > 0 ? fr.width : D;      // a partial's columns
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  // Row strides (padded): q and K rows; V rows; o rows; score rows (fp32), weight rows (fp16).
  const int ldh = D + kPadHalves, ldv = VD + kPadHalves, ldo = VD + kPadFloats;
  constexpr int lds = TILE + kPadFloats, ldp = TILE + kPadHalves;
  half* q_h = reinterpret_cast<half*>(smem);
  half* kv_s = q_h + kMmaRows * ldh;  // buffer b: K at kv_s + b TILE (ldh + ldv), V after it
  half* p_h = kv_s + BUFS * TILE * (ldh + ldv);
  float* s_f = reinterpret_cast<float*>(p_h + kMmaRows * ldp);
  float* o_f = s_f + kMmaRows * lds;
  float* m_s = o_f + kMmaRows * ldo;
  float* l_s = m_s + kMmaRows;
  const auto k_buf = [&](int b) { return kv_s + b * TILE * (ldh + ldv); };

  const RowSplit rs = row_split(row_seq, seqs, tables, p, r, split, out.splits, TILE);
  const SplitRange rg = rs.rg;
  const int* table = rs.table;

  const float* qr = q + (static_cast<size_t>(r) * H + kvh * G) * D;
  for (int e = tid; e < kMmaRows * D; e += kSplitThreads) {
    const int g = e / D, d = e % D;
    q_h[g * ldh + d] = __float2half_rn(g < G ? qr[e] : 0.0f);
  }
  for (int e = tid; e < kMmaRows * VD; e += kSplitThreads) o_f[(e / VD) * ldo + e % VD] = 0.0f;
  if (tid < kMmaRows) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.0f;
  }
  if (BUFS == 2 && rg.begin < rg.end)
    load_tile<VEC, TILE, BUFS, VW>(table, kv, fr, vc, kvh, D, rg.begin,
                                   min(TILE, rg.end - rg.begin), k_buf(0), k_buf(0) + TILE * ldh,
                                   ldh, ldv);
  int buf = 0;
  for (int c0 = rg.begin; c0 < rg.end; c0 += TILE, buf ^= (BUFS - 1)) {
    const int len = min(TILE, rg.end - c0);
    half* k_s = k_buf(buf);
    half* v_s = k_s + TILE * ldh;
    if constexpr (BUFS == 2) {
      const int next = c0 + TILE;
      if (next < rg.end) {
        half* k_n = k_buf(buf ^ 1);
        load_tile<VEC, TILE, BUFS, VW>(table, kv, fr, vc, kvh, D, next, min(TILE, rg.end - next),
                                       k_n, k_n + TILE * ldh, ldh, ldv);
        __pipeline_wait_prior(1);
      } else {
        __pipeline_wait_prior(0);
      }
    } else {
      load_tile<VEC, TILE, BUFS, VW>(table, kv, fr, vc, kvh, D, c0, len, k_s, v_s, ldh, ldv);
    }
    __syncthreads();
    if ((rope_past && c0 < rs.past_end) || VW > 0) {
      if (rope_past && c0 < rs.past_end)
        rope_past_rows(k_s, VW > 0 ? nullptr : v_s, ldh, D, c0, min(len, rs.past_end - c0),
                       past_rope);
      if constexpr (VW > 0) {  // the latent rows are bf16, the step's new rows too
        for (int e = tid; e < len * VW; e += kSplitThreads) {
          half& v = v_s[(e / VW) * ldv + e % VW];
          v = bf16_bits_to_half(v);
        }
      }
      __syncthreads();
    }
    // Scores [16][TILE]: a warp per 16 positions.
    if (warp < TILE / 16) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int k = 0; k < D; k += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::col_major> b;
        wmma::load_matrix_sync(a, q_h + k, ldh);
        wmma::load_matrix_sync(b, k_s + warp * 16 * ldh + k, ldh);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(s_f + warp * 16, acc, lds, wmma::mem_row_major);
    }
    __syncthreads();
    // Online softmax per head (a warp per row); the accumulator's row takes the correction.
    for (int g = warp; g < kMmaRows; g += kSplitWarps) {
      half* pg = p_h + g * ldp;
      if (g >= G) {
        for (int j = lane; j < TILE; j += 32) pg[j] = __float2half_rn(0.0f);
        continue;
      }
      float* sg = s_f + g * lds;
      float mx = -INFINITY;
      for (int j = lane; j < TILE; j += 32) {
        const float sc = j < len ? attn_score(sg[j], p.scale, p.softcap) : -INFINITY;
        sg[j] = sc;
        mx = fmaxf(mx, sc);
      }
      mx = warp_reduce(mx, MaxOp());
      const float m_old = m_s[g], m_new = fmaxf(m_old, mx);
      float sum = 0.0f;
      for (int j = lane; j < TILE; j += 32) {
        const half e = __float2half_rn(m_new == -INFINITY ? 0.0f : expf(sg[j] - m_new));
        pg[j] = e;
        sum += __half2float(e);  // the weights P V uses
      }
      sum = warp_reduce(sum, SumOp<float>());
      const float c = m_new == -INFINITY ? 1.0f : expf(m_old - m_new);
      for (int d = lane; d < VD; d += 32) o_f[g * ldo + d] *= c;
      if (lane == 0) {
        l_s[g] = l_s[g] * c + sum;
        m_s[g] = m_new;
      }
    }
    __syncthreads();
    // O [16][VD] += P [16][TILE] V [TILE][VD]: a warp per 16 columns.
    for (int nt = warp; nt < VD / 16; nt += kSplitWarps) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, o_f + nt * 16, ldo, wmma::mem_row_major);
      for (int k = 0; k < TILE; k += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::row_major> b;
        wmma::load_matrix_sync(a, p_h + k, ldp);
        wmma::load_matrix_sync(b, v_s + k * ldv + nt * 16, ldv);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(o_f + nt * 16, acc, ldo, wmma::mem_row_major);
    }
    __syncthreads();  // the buffers, s_f and p_h are written next
  }
  for (int e = tid; e < G * VD; e += kSplitThreads) {
    const int g = e / VD, d = e % VD;
    out.acc[partial_index(r, H, kvh * G + g, out.splits, split) * width + vc * VD + d] =
        o_f[g * ldo + d];
  }
  if (tid < G && vc == 0) {  // every slice's block finds the same m and l
    const size_t at = partial_index(r, H, kvh * G + tid, out.splits, split) * 2;
    out.ml[at] = m_s[tid];
    out.ml[at + 1] = l_s[tid];
  }
}

template <int VEC, int TILE, int BUFS, int VW>
void launch(const float* q, int rows, const int* row_seq, const AttnSeq* seqs, const int* tables,
            KvPages kv, AttnParams p, SplitPartials out, const RopeAngles* past_rope,
            const FoldRows* fold, cudaStream_t stream) {
  const size_t smem = mma_smem_bytes<TILE, BUFS>(p.head_dim, VW > 0 ? VW : p.head_dim);
  static bool raised = false;
  if (!raised) {
    check(cudaFuncSetAttribute(paged_attention_mma_kernel<VEC, TILE, BUFS, VW>,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, 160 * 1024),
          "paged_attention_mma smem");
    raised = true;
  }
  const FoldRows fr = fold ? *fold : FoldRows{};
  const dim3 grid = VW > 0 ? dim3(p.num_kv_heads, out.splits * (fr.width / VW), rows)
                           : dim3(out.splits, p.num_kv_heads, rows);
  launch_pdl(paged_attention_mma_kernel<VEC, TILE, BUFS, VW>, grid, kSplitThreads, smem, stream, q,
             row_seq, seqs, tables, kv, p, out, past_rope ? *past_rope : RopeAngles{},
             past_rope != nullptr, fr);
}

}  // namespace

int fold_slice_width(int width) {
  if (width <= 0) return 0;
  for (int vw : {256, 128, 64, 32})
    if (width % vw == 0) return vw;
  return 0;
}

void paged_attention_mma(const float* q, int rows, const int* row_seq, const AttnSeq* seqs,
                         const int* tables, KvPages kv, AttnParams p, SplitPartials out,
                         bool aligned, const RopeAngles* past_rope, const FoldRows* fold,
                         cudaStream_t stream) {
  if (fold) {
    const int vw = fold_slice_width(fold->width);
    if (!aligned || vw == 0)
      throw CudaError("paged_attention_mma: the fold needs 16-byte rows and a width that is a multiple of 32");
    if (vw == 256)
      launch<8, 32, 2, 256>(q, rows, row_seq, seqs, tables, kv, p, out, past_rope, fold, stream);
    else if (vw == 128)
      launch<8, 32, 2, 128>(q, rows, row_seq, seqs, tables, kv, p, out, past_rope, fold, stream);
    else if (vw == 64)
      launch<8, 32, 2, 64>(q, rows, row_seq, seqs, tables, kv, p, out, past_rope, fold, stream);
    else
      launch<8, 32, 2, 32>(q, rows, row_seq, seqs, tables, kv, p, out, past_rope, fold, stream);
  } else if (aligned) {
    launch<8, 32, 2, 0>(q, rows, row_seq, seqs, tables, kv, p, out, past_rope, nullptr, stream);
  } else {
    launch<2, 64, 1, 0>(q, rows, row_seq, seqs, tables, kv, p, out, past_rope, nullptr, stream);
  }
}

}  // namespace xq::cuda
