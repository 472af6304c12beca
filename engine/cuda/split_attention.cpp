// CudaModel's split-context attention: fp16 K/V pages (the cache's, or rematerialized rows)
// through paged_attention_splits, and
// XQuant's decode steps through the fused xquant_decode_splits (kernels/cuda/decode_ops.h), each
// merged by attention_combine. XQ_CUDA_SPLIT_ATTENTION=0 keeps the earlier kernels (attention(),
// and the rematerializing workspace for every XQuant step), for side-by-side measurements;
// XQ_CUDA_FUSED_DECODE=1 turns the fused XQuant decode on (off by default); XQ_CUDA_GRAPHS=0 runs
// decode steps without CUDA graphs; XQ_CUDA_FOLD picks how the workspace path gets V;
// XQ_CUDA_ATTN_MMA=0 scores fp16 pages on the CUDA cores instead of the tensor cores.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "engine/cuda/cuda_model.h"
#include "kernels/cuda/decode_ops.h"

namespace xq::cuda {
namespace {

bool env_flag(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  return v == nullptr ? fallback : std::strcmp(v, "0") != 0;
}

constexpr int kMinSplitPositions = 64;   // fp16: one tile of positions per split at least
constexpr int kMinFusedPositions = 128;  // fused XQuant: two tiles of rebuilt keys

int multiprocessors() {
  int dev = 0, n = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev), "device attribute");
  return n;
}

// The value input the fused kernel folds: the V latent (second half of a latent row) or X.
int folded_width(const ModelConfig& cfg, GpuCacheKind kind) {
  return kind == GpuCacheKind::XLatent ? cfg.kv_dim() : cfg.hidden_size;
}

}  // namespace

void CudaModel::setup_attention_paths(int rows, int decode_rows) {
  graphs_on_ = env_flag("XQ_CUDA_GRAPHS", true);
  attn_mma_ = env_flag("XQ_CUDA_ATTN_MMA", true);
  attn_rope_ = env_flag("XQ_CUDA_ATTN_ROPE", true);
  // Off unless XQ_CUDA_ATTN_FOLD=1: on the H200 the fold recomputes the scores for every slice
  // of the V latent and lost to the V rebuild (9.9 vs 23.3 ms per 4-layer step of the 8B shape
  // at 32 x 4K, 1.30 vs 1.75 ms at 1 x 4K; bench/RESULTS.md).
  attn_fold_ = env_flag("XQ_CUDA_ATTN_FOLD", false) &&
               format_->kind() == GpuCacheKind::XLatent && fold_slice_width(cfg_.kv_dim()) > 0;
  // X folds V after the softmax; the GQA latent rebuilds V with one matmul, as cheap as K's
  // (measured faster, bench/RESULTS.md). XQ_CUDA_FOLD=1/0 forces either.
  fold_ = env_flag("XQ_CUDA_FOLD", format_->kind() != GpuCacheKind::XLatent);
  if (!env_flag("XQ_CUDA_SPLIT_ATTENTION", true)) return;
  AttnParams p;
  p.num_heads = cfg_.num_heads;
  p.num_kv_heads = cfg_.num_kv_heads;
  p.head_dim = cfg_.head_dim;
  const int H = cfg_.num_heads;
  // One split per row at the largest step, or the splits that fill the device twice at the
  // largest decode step: rows * splits stays under rows + 2 * SMs / kv_heads + 1.
  const size_t spread = 2 * multiprocessors() / cfg_.num_kv_heads + 1;
  size_t floats = 0;
  // Every format runs paged attention over fp16 K/V: the cache's, or rematerialized rows.
  if (paged_attention_supported(p))
    floats = (static_cast<size_t>(rows) + spread) * H * cfg_.head_dim;
  if (format_->rematerializes()) {
    XDecodeParams x;
    x.k_width = format_->kind() == GpuCacheKind::XLatent ? cfg_.kv_dim() : cfg_.hidden_size;
    x.v_width = folded_width(cfg_, format_->kind());
    // Off unless XQ_CUDA_FUSED_DECODE=1: on the H200 the workspace path (cuBLAS rebuild, split
    // attention) is faster at batch 1 and 32 alike (bench/RESULTS.md). The kernel reads one
    // quantized row per layer (not the latent split around fp16 K channels), at its layer's bits.
    fused_max_rows_ = env_flag("XQ_CUDA_FUSED_DECODE", false) ? decode_rows : 0;
    const GpuCacheLayout& layout = format_->layout();
    // XQuant-CL rebuilds rows through its accumulator: the workspace path only.
    fused_ok_ =
        fused_max_rows_ > 0 && layout.single_segment() && format_->kind() != GpuCacheKind::XQuantCL;
    for (int l = 0; fused_ok_ && l < cfg_.num_layers; ++l) {
      x.layout = layout.segments[l][0].layout;
      fused_ok_ = xquant_decode_supported(p, x);
    }
    if (fused_ok_)
      floats = std::max(floats, (static_cast<size_t>(decode_rows) + spread) * H * x.v_width);
  }
  if (attn_fold_)  // a decode step's weighted V latents, kv_dim wide per head
    floats = std::max(floats, (static_cast<size_t>(decode_rows) + spread) * H * cfg_.kv_dim());
  split_acc_.reset(floats);
  split_ml_.reset(floats == 0 ? 0 : 2 * floats / std::max(1, cfg_.head_dim));
}

bool CudaModel::rope_in_attention(int l, int rows, const AttnParams& p) const {
  const CudaLayer& W = w_.layers[l];
  return attn_rope_ && attn_mma_ && W.bk.empty() && W.bv.empty() && W.k_norm.empty() &&
         paged_attention_tensor_cores(p) && paged_splits(rows) > 0;
}

bool CudaModel::paged_attention(const float* q, float* out, int rows, const int* row_seq,
                                const AttnSeq* seqs, const int* tables, const KvPages& pages,
                                const AttnParams& p, bf16* out_bf16,
                                const RopeAngles* past_rope) {
  const int H = cfg_.num_heads, D = cfg_.head_dim;
  const int splits = paged_attention_supported(p) ? paged_splits(rows) : 0;
  if (splits == 0) {
    if (past_rope) throw std::logic_error("paged_attention: past_rope without the split kernels");
    attention(q, out, rows, row_seq, seqs, tables, pages, p, stream_);
    return false;
  }
  SplitPartials parts{split_ml_.get(), split_acc_.get(), splits};
  paged_attention_splits(q, rows, row_seq, seqs, tables, pages, p, parts, stream_, attn_mma_,
                         past_rope);
  if (out_bf16) {
    attention_combine(parts, rows, H, D, nullptr, out_bf16, stream_, true);
    return true;
  }
  attention_combine(parts, rows, H, D, out, nullptr, stream_);
  return false;
}

int CudaModel::latent_fold_splits(int rows) const {
  const int KV = cfg_.kv_dim(), slices = KV / std::max(1, fold_slice_width(KV));
  const size_t per_split = static_cast<size_t>(rows) * cfg_.num_heads * KV;
  if (per_split == 0 || per_split > split_acc_.size()) return 0;
  return choose_splits(rows, cfg_.num_kv_heads * slices, step_max_len_, kMinSplitPositions,
                       static_cast<int>(split_acc_.size() / per_split));
}

void CudaModel::latent_fold_attention(int l, const StepLayout::Group& g, const int* d,
                                      const AttnParams& p, const KvPages& ws,
                                      const RopeAngles& angles) {
  const CudaLayer& W = w_.layers[l];
  const int H = cfg_.num_heads, D = cfg_.head_dim, KV = cfg_.kv_dim(), Q = cfg_.q_dim();
  const int G = H / cfg_.num_kv_heads, rows = g.rows, C = format_->layout().row_width;
  const size_t r0 = g.row_begin;
  const FoldRows fold{r_.x.get(), static_cast<size_t>(kPageRows) * C, C, KV, KV};
  SplitPartials parts{split_ml_.get(), split_acc_.get(), latent_fold_splits(rows)};
  paged_attention_splits(a_.q.get() + r0 * Q, rows, d + g.row_seq,
                         reinterpret_cast<const AttnSeq*>(d + g.seqs), d + g.tables, ws, p, parts,
                         stream_, true, &angles, &fold);
  timer_.mark("attention", stream_);
  // The merged weighted latents, head-major, then each KV head's rows of Wv (on the latent) and
  // the heads back into rows.
  attention_combine(parts, rows, H, KV, nullptr, r_.y.get(), stream_);
  matmul_nt_batched(blas_, r_.y.get(), W.wv_lat.get(), r_.t.get(), G * rows, KV, D,
                    cfg_.num_kv_heads, static_cast<size_t>(G) * rows * KV,
                    static_cast<size_t>(D) * KV, static_cast<size_t>(G) * rows * D);
  heads_to_rows(r_.t.get(), rows, H, D, G, nullptr, a_.attn.get() + r0 * Q, stream_);
  timer_.mark("fold_project", stream_);
}

int CudaModel::paged_splits(int rows) const {
  const size_t per_split = static_cast<size_t>(rows) * cfg_.num_heads * cfg_.head_dim;
  if (per_split == 0 || per_split > split_acc_.size()) return 0;
  return choose_splits(rows, cfg_.num_kv_heads, step_max_len_, kMinSplitPositions,
                       static_cast<int>(split_acc_.size() / per_split));
}

int CudaModel::fused_splits(int rows) const {
  const size_t per_split =
      static_cast<size_t>(rows) * cfg_.num_heads * folded_width(cfg_, format_->kind());
  if (!fused_ok_ || per_split == 0 || per_split > split_acc_.size()) return 0;
  return choose_splits(rows, cfg_.num_kv_heads, step_max_len_, kMinFusedPositions,
                       static_cast<int>(split_acc_.size() / per_split));
}

void CudaModel::fused_decode(int l, const StepLayout& L, const AttnSeq* seqs, const int* d,
                             const AttnParams& p) {
  const CudaLayer& W = w_.layers[l];
  const bool latent = format_->kind() == GpuCacheKind::XLatent;
  const bool gemma = cfg_.arch == Arch::Gemma3;
  const int rows = L.rows, H = cfg_.num_heads, D = cfg_.head_dim, KV = cfg_.kv_dim();
  const int G = H / cfg_.num_kv_heads;
  const GpuPagePool& pool = format_->pool();
  XDecodeParams x;
  x.base = pool.layer_base(l);
  x.page_bytes = pool.page_bytes(l);
  x.layout = format_->layout().segments[l][0].layout;
  x.k_col = 0;
  x.k_width = latent ? KV : cfg_.hidden_size;
  x.v_col = latent ? KV : 0;
  x.v_width = folded_width(cfg_, format_->kind());
  x.wk = latent ? W.wk_lat.get() : W.wk.get();
  x.bk = W.bk.empty() ? nullptr : W.bk.get();
  x.k_norm = W.k_norm.empty() ? nullptr : W.k_norm.get();
  x.norm_one_plus = gemma;
  x.norm_eps = cfg_.rms_norm_eps;
  x.inv_freq = gemma && cfg_.is_sliding(l) ? rope_local_.get() : rope_global_.get();
  x.k_new = a_.k.get();
  x.v_new = latent ? a_.zb.get() + KV : a_.xb.get();
  x.v_new_stride = latent ? 2 * KV : cfg_.hidden_size;
  SplitPartials parts{split_ml_.get(), split_acc_.get(), fused_splits(rows)};
  xquant_decode_splits(a_.q.get(), rows, seqs, d + L.tables, x, p, parts, stream_);
  timer_.mark("fused_decode", stream_);
  // The merged weighted means, head-major, then Wv per KV head and the heads back into rows.
  attention_combine(parts, rows, H, x.v_width, nullptr, r_.y.get(), stream_);
  const bf16* wv = latent ? W.wv_lat.get() : W.wv.get();
  matmul_nt_batched(blas_, r_.y.get(), wv, r_.t.get(), G * rows, x.v_width, D, cfg_.num_kv_heads,
                    static_cast<size_t>(G) * rows * x.v_width, static_cast<size_t>(D) * x.v_width,
                    static_cast<size_t>(G) * rows * D);
  heads_to_rows(r_.t.get(), rows, H, D, G, W.bv.empty() ? nullptr : W.bv.get(), a_.attn.get(),
                stream_);
  timer_.mark("fold_project", stream_);
}

}  // namespace xq::cuda
