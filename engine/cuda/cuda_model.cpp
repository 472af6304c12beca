#include "engine/cuda/cuda_model.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "engine/cache/layer_attention.h"
#include "engine/cuda/sliding_ring.h"
#include "engine/model/rope_freqs.h"
#include "kernels/cuda/sample_ops.h"
#include "kernels/cuda/skinny_matmul.h"

namespace xq::cuda {
namespace {

constexpr size_t kBlasWorkspace = size_t{32} << 20;
constexpr int kLogitRows = 64;  // lm_head rows per pass (vocab-wide fp32 rows are large)
constexpr int kMaxRopeTable = 1 << 20;  // positions the RoPE tables hold at most
// V is folded after the softmax for sequences with at most this many new rows (decode); prefill
// chunks rematerialize V, where one matmul over the rows beats per-row weighted sums of X.
constexpr int kMaxFoldRows = 4;
// Rows of rematerialized K/V one pass takes (or one sequence at the full context, if more): a
// batch's sequences share a pass, so its matmuls are large and its launches few.
constexpr int kRematRows = 32768;

int round_up_pages(int rows) { return (rows + kPageRows - 1) / kPageRows * kPageRows; }

// Rows from the environment (tests: XQ_CUDA_REMAT_ROWS, a workspace small enough for several
// groups a step; XQ_CUDA_CL_ACC_ROWS, an accumulator too small for all of them), or `fallback`.
int env_rows(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v == nullptr ? fallback : round_up_pages(std::max(1, std::atoi(v)));
}

DeviceBuffer<double> upload_doubles(const std::vector<double>& v) {
  DeviceBuffer<double> d;
  d.upload(v.data(), v.size());
  return d;
}

double gib(double bytes) { return bytes / (1024.0 * 1024.0 * 1024.0); }

const DeviceBuffer<float> kNoBias;  // empty: project() adds nothing

}  // namespace

CudaModel::CudaModel(const ModelConfig& cfg, const WeightSource& src, const EngineOptions& opts)
    : cfg_(cfg) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    cudaGetLastError();
    throw ConfigError("--device cuda: no CUDA GPU is visible to this process");
  }
  if (!(opts.gpu_memory_utilization > 0.0 && opts.gpu_memory_utilization <= 1.0))
    throw ConfigError("--gpu-memory-utilization must be in (0, 1], got " +
                      std::to_string(opts.gpu_memory_utilization));
  check(cudaSetDevice(device_), "cudaSetDevice");
  const int max_len = opts.max_model_len > 0 ? opts.max_model_len : cfg_.max_position_embeddings;
  // Format errors before loading. A step gives one sequence at most the step's token budget,
  // which sizes the sliding layers' rings; a ring as long as the longest sequence saves nothing.
  const int step_rows = std::max(opts.max_num_batched_tokens, 1);
  const bool rings = cfg_.sliding_window > 0 &&
                     ring_pages_for(cfg_.sliding_window, step_rows) * kPageRows < max_len;
  format_ = std::make_unique<GpuCacheFormat>(cfg_, opts.cache, rings ? step_rows : 0);
  const ModelRopeFreqs rope = model_rope_freqs(cfg_);
  check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  check(cublasCreate(&blas_), "cublasCreate");
  check(cublasSetStream(blas_, stream_), "cublasSetStream");
  blas_workspace_.reset(kBlasWorkspace);
  check(cublasSetWorkspace(blas_, blas_workspace_.get(), kBlasWorkspace), "cublasSetWorkspace");

  const bool cl = format_->kind() == GpuCacheKind::XQuantCL;
  w_ = upload_weights(cfg_, src, format_->kind() == GpuCacheKind::XLatent,
                      cl && format_->layout().cl.latent);
  rope_global_ = upload_doubles(rope.global);
  rope_local_ = upload_doubles(rope.local);
  // The cosines and sines of every position served, so RoPE passes only read them (positions
  // past the table, if a model's length is absurd, are computed as they come).
  rope_positions_ = std::min(max_len, kMaxRopeTable);
  const size_t table = static_cast<size_t>(rope_positions_) * (cfg_.head_dim / 2);
  rope_tab_global_.reset(table);
  rope_table(rope_global_.get(), cfg_.head_dim, rope_positions_, rope_tab_global_.get(), stream_);
  if (!rope.local.empty()) {
    rope_tab_local_.reset(table);
    rope_table(rope_local_.get(), cfg_.head_dim, rope_positions_, rope_tab_local_.get(), stream_);
  }

  // Workspace for the scheduler's largest step, so serving never allocates.
  reserve_rows(std::max(opts.max_num_batched_tokens, opts.max_num_seqs));
  fold_rows_ = std::max(1, opts.max_num_seqs);
  if (format_->rematerializes())
    reserve_remat(env_rows("XQ_CUDA_REMAT_ROWS", std::max(kRematRows, round_up_pages(max_len))));
  if (cl) {  // the accumulator holds twice the workspace's rows: a step of several groups
    cl_ = std::make_unique<ClAccumulator>(cfg_, *format_, w_,
                                          env_rows("XQ_CUDA_CL_ACC_ROWS", 2 * remat_capacity_));
    cl_->reserve(rows_capacity_, remat_capacity_);
  }
  setup_attention_paths(std::max(opts.max_num_batched_tokens, opts.max_num_seqs), fold_rows_);
  logit_rows_ = kLogitRows;
  // A step's rows stay on the device for their summaries: one per sequence at most.
  summary_rows_ = std::max(kLogitRows, opts.max_num_seqs);
  picked_.reset(static_cast<size_t>(summary_rows_) * cfg_.hidden_size);
  logits_.reset(static_cast<size_t>(summary_rows_) * cfg_.vocab_size);
  host_logits_.reset(static_cast<size_t>(kLogitRows) * cfg_.vocab_size);
  // The edits' room (~7 MiB pinned and as much on the device) is outside the budget too.
  summaries_.reserve(summary_rows_, kSummaryCandidates, cfg_.vocab_size,
                     static_cast<int>(kMaxStepEdits));
  check(cudaDeviceSynchronize(), "load");

  // The cache gets what --gpu-memory-utilization leaves: memory in use now (this process's
  // weights, workspace and context, and anything else on the device) is taken off.
  size_t free_b = 0, total_b = 0;
  check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
  const double used = static_cast<double>(total_b - free_b);
  const double budget = opts.gpu_memory_utilization * static_cast<double>(total_b) - used;
  const double page_all_layers = static_cast<double>(format_->layout().page_bytes_all_layers());
  if (budget < page_all_layers) {
    throw ConfigError(fmt::format(
        "--gpu-memory-utilization {:.2f} of {:.1f} GiB leaves no room for the cache: {:.2f} GiB "
        "in use after loading (weights {:.2f} GiB, workspace {:.2f} GiB)",
        opts.gpu_memory_utilization, gib(total_b), gib(used), gib(w_.bytes()),
        gib(workspace_bytes())));
  }
  if (opts.gpu_cache_bytes > budget)
    throw ConfigError(fmt::format(
        "--gpu-cache-memory {:.2f} GiB does not fit the {:.2f} GiB --gpu-memory-utilization {:.2f} "
        "leaves",
        gib(opts.gpu_cache_bytes), gib(budget), opts.gpu_memory_utilization));
  cache_bytes_ = format_->allocate(opts.gpu_cache_bytes > 0 ? opts.gpu_cache_bytes : budget,
                                   opts.max_num_seqs);
  spdlog::info(
      "GPU {}: {:.1f} GiB; weights {:.2f} GiB (bf16), workspace {:.2f} GiB, cache {:.2f} GiB in "
      "{} pages of {} tokens (--gpu-memory-utilization {:.2f})",
      device_, gib(total_b), gib(w_.bytes()), gib(workspace_bytes()), gib(cache_bytes_),
      format_->pool().pages(), kPageRows, opts.gpu_memory_utilization);
  if (format_->layout().ring_pages > 0)
    spdlog::info(
        "sliding-window layers: {} ring pages, {} per sequence (window {}, steps of up to {} "
        "rows a sequence)",
        format_->pool().ring_pages(), format_->layout().ring_pages, cfg_.sliding_window,
        format_->layout().ring_step_rows);
}

CudaModel::~CudaModel() {
  if (blas_) cublasDestroy(blas_);
  if (stream_) cudaStreamDestroy(stream_);
}

size_t CudaModel::workspace_bytes() const {
  size_t n = blas_workspace_.bytes() + step_ints_.bytes() + picked_.bytes() + logits_.bytes() +
             split_ml_.bytes() + split_acc_.bytes();
  for (const auto* b : {&a_.h, &a_.x, &a_.q, &a_.k, &a_.v, &a_.attn, &a_.o, &a_.gate, &a_.z,
                        &r_.k32, &r_.v32, &r_.probs, &r_.t})
    n += b->bytes();
  for (const auto* b : {&a_.xb, &a_.attnb, &a_.act, &a_.zb, &r_.x, &r_.y}) n += b->bytes();
  return n + r_.k.bytes() + r_.v.bytes() + (cl_ ? cl_->bytes() : 0);
}

void CudaModel::reserve_rows(int rows) {
  if (rows <= rows_capacity_) return;
  graphs_.clear();  // captured steps name the buffers about to move
  const size_t n = rows, H = cfg_.hidden_size, Q = cfg_.q_dim(), KV = cfg_.kv_dim(),
               I = cfg_.intermediate_size;
  a_.h.reset(n * H);
  a_.x.reset(n * H);
  a_.o.reset(n * H);
  a_.xb.reset(n * std::max(H, Q));
  a_.q.reset(n * Q);
  a_.attn.reset(n * Q);
  a_.attnb.reset(n * Q);
  a_.k.reset(n * KV);
  a_.v.reset(n * KV);
  a_.gate.reset(n * std::max(2 * I, Q + 2 * KV));  // the stacked gate-up or QKV product
  a_.act.reset(n * I);
  if (format_->kind() == GpuCacheKind::XLatent) {
    a_.z.reset(n * 2 * KV);
    a_.zb.reset(n * 2 * KV);
  }
  rows_capacity_ = rows;
}

void CudaModel::reserve_remat(int rows) {
  if (rows <= remat_capacity_) return;
  graphs_.clear();  // captured steps name the buffers about to move
  const size_t n = rows, H = cfg_.hidden_size, KV = cfg_.kv_dim();
  r_.x.reset(n * H);
  r_.k32.reset(n * KV);
  r_.v32.reset(n * KV);
  r_.k.reset(n * KV);
  r_.v.reset(n * KV);
  // A decode step's weights: one row per sequence, every head, every position of the group.
  const size_t heads = cfg_.num_heads, fold = fold_rows_;
  r_.probs.reset(heads * n);
  r_.y.reset(heads * fold * H);
  r_.t.reset(heads * fold * cfg_.head_dim);
  remat_capacity_ = rows;
}

void CudaModel::forward(std::span<const SeqInput> batch, std::vector<float>& logits) {
  logits.clear();
  if (!run_layers(batch)) return;
  output_logits(batch, logits);
  timer_.end_step(step_decode_);
}

void CudaModel::forward_summarized(std::span<const SeqInput> batch,
                                   std::span<const RowDrawSpec> specs, size_t listable,
                                   std::vector<RowSummary>& out) {
  out.clear();
  if (!run_layers(batch)) return;
  summarize_logits(batch, specs, listable, out);
  timer_.end_step(step_decode_);
}

bool CudaModel::run_layers(std::span<const SeqInput> batch) {
  check(cudaSetDevice(device_), "cudaSetDevice");
  std::vector<StepSeq> seqs;
  std::vector<GpuSequence*> caches;
  for (const SeqInput& s : batch) {
    if (s.tokens.empty()) continue;
    auto* c = dynamic_cast<GpuSequence*>(s.cache);
    if (!c) throw std::invalid_argument("CudaModel: a sequence cache not made by its format");
    if (c->num_tokens() != s.start_pos)
      throw std::invalid_argument("CudaModel: the cache holds " + std::to_string(c->num_tokens()) +
                                  " tokens, the input starts at " + std::to_string(s.start_pos));
    for (int t : s.tokens) {
      if (t < 0 || t >= cfg_.vocab_size)
        throw std::invalid_argument("token id " + std::to_string(t) +
                                    " is outside the vocabulary (" +
                                    std::to_string(cfg_.vocab_size) + ")");
    }
    const GpuCacheLayout& layout = format_->layout();
    if (layout.ring_pages > 0 && static_cast<int>(s.tokens.size()) > layout.ring_step_rows)
      throw std::invalid_argument(
          "CudaModel: a step of " + std::to_string(s.tokens.size()) +
          " new tokens for one sequence; the sliding-window rings hold steps of at most " +
          std::to_string(layout.ring_step_rows) + " (--max-num-batched-tokens)");
    c->reserve(s.start_pos + static_cast<int>(s.tokens.size()));
    StepSeq q{&c->pages(), s.tokens.data(), s.start_pos, static_cast<int>(s.tokens.size())};
    if (layout.ring_pages > 0) {
      q.ring = &c->ring();
      q.ring_pages = layout.ring_pages;
      q.window = cfg_.sliding_window;
    }
    seqs.push_back(q);
    caches.push_back(c);
  }
  if (seqs.empty()) return false;
  int new_rows = 0;
  step_max_len_ = 0;
  for (const StepSeq& s : seqs) {
    new_rows += s.n;
    step_max_len_ = std::max(step_max_len_, s.start + s.n);
  }
  // A decode step (one new row per sequence) of the fused XQuant kernel reads the cache's pages
  // directly: no workspace rows to lay out.
  step_fused_ = fused_ok_ && new_rows == static_cast<int>(seqs.size()) &&
                new_rows <= std::min(fold_rows_, fused_max_rows_);
  const bool remat = format_->rematerializes() && !step_fused_;
  StepLayout L = build_step_layout(seqs, remat ? remat_capacity_ : 0, cfg_.num_heads);
  reserve_rows(L.rows);
  if (remat) reserve_remat(std::max(L.max_ws_rows, L.rows));  // KIVI stages a step's values too
  const bool channel = format_->layout().has_channel_blocks();
  if (channel) {
    std::vector<int> slots;
    for (const GpuSequence* c : caches) slots.push_back(c->window_slot());
    chan_ = build_channel_step(L, seqs, slots, format_->layout().group,
                               !format_->layout().value_window.empty());
  }
  if (cl_) cl_->plan_step(L, channel ? &chan_ : nullptr);
  step_ints_.ensure(L.ints.size());
  check(cudaMemcpyAsync(step_ints_.get(), L.ints.data(), L.ints.size() * sizeof(int),
                        cudaMemcpyHostToDevice, stream_),
        "step upload");
  const int* d = step_ints_.get();
  timer_.mark("start", stream_);

  const float scale =
      cfg_.arch == Arch::Gemma3 ? std::sqrt(static_cast<float>(cfg_.hidden_size)) : 1.0f;
  // Decode steps of the fp16 cache or the fused XQuant kernel depend on the host only through
  // the batch size and the split counts: they replay a captured graph.
  const bool graph = graphs_on_ && !timer_.on() && new_rows == static_cast<int>(seqs.size()) &&
                     (format_->kind() == GpuCacheKind::Kv16 || step_fused_);
  auto layers = [&] {
    embed(w_.embed.get(), d + L.tokens, L.rows, cfg_.hidden_size, scale, a_.h.get(), stream_);
    timer_.mark("embed", stream_);
    for (int l = 0; l < cfg_.num_layers; ++l) {
      attention_block(l, L, d);
      mlp_block(l, L.rows);  // ends with the next layer's attention norm (add_rmsnorm)
    }
  };
  if (graph) {
    if (graph_ints_ != step_ints_.get()) graphs_.clear();  // the step's arrays moved
    graph_ints_ = step_ints_.get();
    graphs_.run({L.rows, paged_splits(L.rows), step_fused_ ? fused_splits(L.rows) : 0, 0}, stream_,
                layers);
  } else {
    layers();
  }
  step_decode_ = L.rows == static_cast<int>(seqs.size());  // the stage timer counts only these
  for (size_t i = 0; i < caches.size(); ++i) caches[i]->set_tokens(seqs[i].start + seqs[i].n);
  return true;
}

void CudaModel::project(const DeviceBuffer<float>& bias, const bf16* x, MatrixView w, float* y,
                        int rows, int in, int out) {
  matmul_nt(blas_, x, w.get(), y, rows, in, out);
  if (!bias.empty()) add_bias(y, bias.get(), rows, out, stream_);
}

void CudaModel::norm_rope(int l, float* t, int rows, int heads, const DeviceBuffer<float>& norm,
                          const int* pos, half* out) {
  const bool gemma = cfg_.arch == Arch::Gemma3;
  if (!norm.empty())
    rmsnorm(t, norm.get(), rows * heads, cfg_.head_dim, cfg_.rms_norm_eps, gemma, t, nullptr,
            stream_);
  if (out) {
    rope_to_half(t, rows, heads, cfg_.head_dim, heads * cfg_.head_dim, pos, rope_angles(l), out,
                 stream_);
  } else {
    rope(t, rows, heads, cfg_.head_dim, heads * cfg_.head_dim, pos, rope_angles(l), stream_);
  }
}

RopeAngles CudaModel::rope_angles(int l) const {
  const bool local = cfg_.arch == Arch::Gemma3 && cfg_.is_sliding(l);
  if (local) return {rope_local_.get(), rope_tab_local_.get(), rope_positions_};
  return {rope_global_.get(), rope_tab_global_.get(), rope_positions_};
}

void CudaModel::attention_block(int l, const StepLayout& L, const int* d) {
  const CudaLayer& W = w_.layers[l];
  const int H = cfg_.hidden_size, Q = cfg_.q_dim(), KV = cfg_.kv_dim(), rows = L.rows;
  const bool gemma = cfg_.arch == Arch::Gemma3;
  if (l == 0)  // later layers' inputs were normed by the previous MLP's residual add
    rmsnorm(a_.h.get(), W.attn_norm.get(), rows, H, cfg_.rms_norm_eps, gemma, a_.x.get(),
            a_.xb.get(), stream_);
  // One product for Q, K and V into the stacked-product buffer, then the columns apart.
  matmul_nt(blas_, a_.xb.get(), W.wqkv.get(), a_.gate.get(), rows, H, Q + 2 * KV);
  const auto bias = [](const DeviceBuffer<float>& b) { return b.empty() ? nullptr : b.get(); };
  if (W.q_norm.empty() && W.k_norm.empty()) {
    qkv_rope(a_.gate.get(), rows, Q, KV, cfg_.head_dim, bias(W.bq), bias(W.bk), bias(W.bv),
             d + L.pos, rope_angles(l), a_.q.get(), a_.k.get(), a_.v.get(), stream_);
  } else {  // the norms come between the split and RoPE
    split_qkv(a_.gate.get(), rows, Q, KV, bias(W.bq), bias(W.bk), bias(W.bv), a_.q.get(),
              a_.k.get(), a_.v.get(), stream_);
    norm_rope(l, a_.q.get(), rows, cfg_.num_heads, W.q_norm, d + L.pos);
    norm_rope(l, a_.k.get(), rows, cfg_.num_kv_heads, W.k_norm, d + L.pos);
  }
  timer_.mark("qkv", stream_);

  AttnParams p;
  p.num_heads = cfg_.num_heads;
  p.num_kv_heads = cfg_.num_kv_heads;
  p.head_dim = cfg_.head_dim;
  p.window = cfg_.is_sliding(l) && cfg_.sliding_window > 0 ? cfg_.sliding_window : 0;
  p.scale = attention_scale(cfg_);
  p.softcap = cfg_.attn_logit_softcap;
  const GpuPagePool& pool = format_->pool();
  // A sliding layer with a ring reads and writes its own pool through the ring's maps.
  const bool ring = format_->layout().ring_layer(l);
  const RowMap new_rows{d + (ring ? L.ring_new_page : L.new_page), d + L.new_slot};
  const auto* cache_seqs = reinterpret_cast<const AttnSeq*>(d + (ring ? L.ring_seqs : L.seqs));
  bool attn_bf16 = false;  // the attention wrote the o-projection's bf16 operand itself
  if (format_->kind() == GpuCacheKind::Kv16) {
    // A page's layer part: its K rows, then its V rows.
    half* base = reinterpret_cast<half*>(pool.layer_base(l));
    const KvPages pages{base, base + static_cast<size_t>(kPageRows) * KV, pool.page_bytes(l) / 2,
                        KV};
    write_kv_rows(a_.k.get(), a_.v.get(), rows, KV, new_rows, pages, stream_);
    attn_bf16 = paged_attention(a_.q.get(), a_.attn.get(), rows, d + L.row_seq, cache_seqs,
                                d + L.tables, pages, p, a_.attnb.get());
    timer_.mark("attention", stream_);
  } else if (format_->kind() == GpuCacheKind::Kivi) {
    kivi_attention(l, L, d, p);
  } else {
    const bool latent = format_->kind() == GpuCacheKind::XLatent;
    if (latent) {  // the new rows' latents [X U_k, X U_v]
      project(kNoBias, a_.xb.get(), W.u_cat, a_.z.get(), rows, H, 2 * KV);
      to_bf16(a_.z.get(), static_cast<size_t>(rows) * 2 * KV, a_.zb.get(), stream_);
      timer_.mark("latent", stream_);
    }
    if (step_fused_)
      fused_decode(l, L, cache_seqs, d, p);
    else
      remat_attention(l, L, d, p);
    if (!cl_) {  // XQuant-CL wrote its deltas while rebuilding (ClAccumulator::layer_group)
      format_->write_rows(l, latent ? a_.z.get() : a_.x.get(), rows, new_rows, stream_);
      append_channels(l, L, d, latent ? a_.z.get() : a_.x.get());
    }
    timer_.mark("quantize", stream_);
  }
  if (!attn_bf16) to_bf16(a_.attn.get(), static_cast<size_t>(rows) * Q, a_.attnb.get(), stream_);
  project(W.bo, a_.attnb.get(), W.wo, a_.o.get(), rows, Q, H);
  if (gemma)
    rmsnorm(a_.o.get(), W.post_attn_norm.get(), rows, H, cfg_.rms_norm_eps, true, a_.o.get(),
            nullptr, stream_);
  // The residual add, and the MLP's norm of the sum, in one pass.
  add_rmsnorm(a_.h.get(), a_.o.get(), W.mlp_norm.get(), rows, H, cfg_.rms_norm_eps, gemma,
              a_.x.get(), a_.xb.get(), stream_);
  timer_.mark("o_proj", stream_);
}

bool CudaModel::can_fold(const StepLayout::Group& g) const {
  return fold_ && g.max_n <= kMaxFoldRows && g.rows <= fold_rows_ &&
         g.probs_floats <= r_.probs.size();
}

void CudaModel::remat_attention(int l, const StepLayout& L, const int* d, const AttnParams& p) {
  const int H = cfg_.hidden_size, Q = cfg_.q_dim(), KV = cfg_.kv_dim();
  const KvPages ws{r_.k.get(), r_.v.get(), static_cast<size_t>(kPageRows) * KV, KV};
  const bool latent = format_->kind() == GpuCacheKind::XLatent;
  const int C = format_->layout().row_width;  // cached row width: X, or both latents
  for (size_t gi = 0; gi < L.groups.size(); ++gi) {
    const StepLayout::Group& g = L.groups[gi];
    const bool fold = can_fold(g);
    const bool raw = !fold && rope_in_attention(l, g.rows, p);
    // The latent's V folded inside the attention: V is not rebuilt.
    const bool latent_fold = raw && latent && attn_fold_ && g.max_n <= kMaxFoldRows &&
                             g.rows <= fold_rows_ && latent_fold_splits(g.rows) > 0;
    const RopeAngles angles = rope_angles(l);
    const size_t r0 = g.row_begin;
    // The past's X, dequantized into its sequence's workspace rows, through the key path (and
    // the value path unless folded); the new rows' own K/V (full-precision projections) after
    // them. Folding reads X at every position: the padding rows must hold zeros, not garbage.
    if (fold)
      check(cudaMemsetAsync(r_.x.get(), 0, static_cast<size_t>(g.ws_rows) * C * sizeof(bf16),
                            stream_),
            "workspace clear");
    if (cl_) {
      cl_->layer_group(l, gi, L, d, a_.x.get(), a_.h.get(), r_.x.get(), blas_, stream_);
    } else {
      const bool ring = format_->layout().ring_layer(l);
      format_->read_rows(l, g.ws_rows,
                         RowMap{d + (ring ? g.ring_src_page : g.src_page), d + g.src_slot},
                         r_.x.get(), stream_);
      read_channel_past(l, L, &g - L.groups.data(), d);
    }
    timer_.mark("dequantize", stream_);
    remat_keys(l, g.ws_rows, d + g.ws_pos, raw);
    if (!fold && !latent_fold) {
      remat_values(l, g.ws_rows, raw);
      timer_.mark("remat_v", stream_);
    }
    const RowMap new_rows{d + g.new_page, d + g.new_slot};
    write_kv_rows(a_.k.get() + r0 * KV, a_.v.get() + r0 * KV, g.rows, KV, new_rows, ws, stream_);
    if (latent_fold) {
      write_rows_bf16(a_.zb.get() + r0 * C, g.rows, C, new_rows, r_.x.get(),
                      static_cast<size_t>(kPageRows) * C, stream_);
      latent_fold_attention(l, g, d, p, ws, angles);
    } else if (fold) {
      write_rows_bf16(latent ? a_.zb.get() + r0 * C : a_.xb.get() + r0 * H, g.rows, C, new_rows,
                      r_.x.get(), static_cast<size_t>(kPageRows) * C, stream_);
      folded_values(l, g, d, p, ws);
    } else {
      paged_attention(a_.q.get() + r0 * Q, a_.attn.get() + r0 * Q, g.rows, d + g.row_seq,
                      reinterpret_cast<const AttnSeq*>(d + g.seqs), d + g.tables, ws, p, nullptr,
                      raw ? &angles : nullptr);
      timer_.mark("attention", stream_);
    }
  }
}

void CudaModel::folded_values(int l, const StepLayout::Group& g, const int* d, const AttnParams& p,
                              const KvPages& ws) {
  const CudaLayer& W = w_.layers[l];
  const int H = cfg_.hidden_size, Q = cfg_.q_dim(), D = cfg_.head_dim;
  const int heads = cfg_.num_heads, kv_heads = cfg_.num_kv_heads, group = heads / kv_heads;
  const size_t r0 = g.row_begin, rows = g.rows;
  const auto* seqs = reinterpret_cast<const AttnSeq*>(d + g.seqs);
  attention_probs(a_.q.get() + r0 * Q, g.rows, d + g.row_seq, seqs, d + g.tables, ws, p,
                  d + g.seq_probs, r_.probs.get(), step_max_len_, stream_);
  timer_.mark("fold_probs", stream_);
  // The value side of the cached rows: X, or the V latent (the second half of each row).
  const bool latent = format_->kind() == GpuCacheKind::XLatent;
  const int C = format_->layout().row_width, width = latent ? cfg_.kv_dim() : H;
  const bf16* values = latent ? r_.x.get() + cfg_.kv_dim() : r_.x.get();
  const bf16* wv = latent ? W.wv_lat.get() : W.wv.get();
  weighted_rows(r_.probs.get(), d + g.seq_probs, seqs, g.seq_end - g.seq_begin, g.max_n * heads,
                d + g.seq_x_row, values, width, C, heads, g.rows, r_.y.get(), stream_);
  timer_.mark("fold_weighted", stream_);
  // Per KV head: its query heads' weighted means (group * rows of them) times its Wv rows.
  matmul_nt_batched(blas_, r_.y.get(), wv, r_.t.get(), group * g.rows, width, D, kv_heads,
                    group * rows * width, static_cast<size_t>(D) * width, group * rows * D);
  heads_to_rows(r_.t.get(), g.rows, heads, D, group, W.bv.empty() ? nullptr : W.bv.get(),
                a_.attn.get() + r0 * Q, stream_);
  timer_.mark("fold_project", stream_);
}

CudaModel::RematOperand CudaModel::remat_operand(int l, bool values) const {
  const CudaLayer& W = w_.layers[l];
  const int H = cfg_.hidden_size, KV = cfg_.kv_dim();
  // The latent: K = (X U_k^T)(Wk U_k^T)^T from the row's first half, V likewise from its second.
  if (format_->kind() == GpuCacheKind::XLatent)
    return {r_.x.get() + (values ? KV : 0), 2 * KV, KV, values ? W.wv_lat.get() : W.wk_lat.get()};
  return {r_.x.get(), H, H, values ? W.wv.get() : W.wk.get()};
}

void CudaModel::remat_values(int l, int rows, bool raw) {
  const CudaLayer& W = w_.layers[l];
  const size_t n = static_cast<size_t>(rows) * cfg_.kv_dim();
  if (raw) {
    const RematOperand o = remat_operand(l, true);
    matmul_nt_strided(blas_, o.x, o.ld, o.w, reinterpret_cast<bf16*>(r_.v.get()), rows, o.in,
                      cfg_.kv_dim());
    return;
  }
  if (!W.bv.empty()) {  // the bias is added in fp32
    remat_projection(l, true, rows, r_.v32.get());
    to_half(r_.v32.get(), n, r_.v.get(), stream_);
    return;
  }
  // The matmul rounds to bf16 (into the fp32 buffer's memory) and one pass makes the fp16
  // workspace rows: a third of the traffic of fp32 out and back.
  bf16* vb = reinterpret_cast<bf16*>(r_.v32.get());
  const RematOperand o = remat_operand(l, true);
  matmul_nt_strided(blas_, o.x, o.ld, o.w, vb, rows, o.in, cfg_.kv_dim());
  bf16_to_half(vb, n, r_.v.get(), stream_);
}

void CudaModel::remat_keys(int l, int rows, const int* pos, bool raw) {
  const CudaLayer& W = w_.layers[l];
  if (raw) {
    const RematOperand o = remat_operand(l, false);
    matmul_nt_strided(blas_, o.x, o.ld, o.w, reinterpret_cast<bf16*>(r_.k.get()), rows, o.in,
                      cfg_.kv_dim());
    timer_.mark("remat_k_matmul", stream_);
    return;
  }
  if (!W.bk.empty() || !W.k_norm.empty()) {  // bias and k-norm in fp32
    remat_projection(l, false, rows, r_.k32.get());
    timer_.mark("remat_k_matmul", stream_);
    norm_rope(l, r_.k32.get(), rows, cfg_.num_kv_heads, W.k_norm, pos, r_.k.get());
    timer_.mark("remat_k_rope", stream_);
    return;
  }
  // The matmul rounds to bf16 and RoPE reads that: half the bytes of an fp32 round trip.
  bf16* kb = reinterpret_cast<bf16*>(r_.k32.get());
  const RematOperand o = remat_operand(l, false);
  matmul_nt_strided(blas_, o.x, o.ld, o.w, kb, rows, o.in, cfg_.kv_dim());
  timer_.mark("remat_k_matmul", stream_);
  rope_to_half(kb, rows, cfg_.num_kv_heads, cfg_.head_dim, cfg_.kv_dim(), pos, rope_angles(l),
               r_.k.get(), stream_);
  timer_.mark("remat_k_rope", stream_);
}

void CudaModel::remat_projection(int l, bool values, int rows, float* out) {
  const CudaLayer& W = w_.layers[l];
  const DeviceBuffer<float>& bias = values ? W.bv : W.bk;
  const RematOperand o = remat_operand(l, values);
  matmul_nt_strided(blas_, o.x, o.ld, o.w, out, rows, o.in, cfg_.kv_dim());
  if (!bias.empty()) add_bias(out, bias.get(), rows, cfg_.kv_dim(), stream_);
}

void CudaModel::mlp_block(int l, int rows) {
  const CudaLayer& W = w_.layers[l];
  const int H = cfg_.hidden_size, I = cfg_.intermediate_size;
  const bool gemma = cfg_.arch == Arch::Gemma3;
  if (skinny_matmul_on() && skinny_matmul_fits(a_.xb.get(), W.w_gate_up.get(), rows, H)) {
    skinny_gated(a_.xb.get(), W.w_gate_up.get(), a_.act.get(), rows, H, I, gemma, stream_);
  } else {
    project(kNoBias, a_.xb.get(), W.w_gate_up, a_.gate.get(), rows, H, 2 * I);
    gated_act(a_.gate.get(), a_.gate.get() + I, rows, I, 2 * I, gemma, a_.act.get(), stream_);
  }
  project(kNoBias, a_.act.get(), W.w_down, a_.o.get(), rows, I, H);
  if (gemma)
    rmsnorm(a_.o.get(), W.post_mlp_norm.get(), rows, H, cfg_.rms_norm_eps, true, a_.o.get(),
            nullptr, stream_);
  if (l + 1 < cfg_.num_layers) {  // the residual add, and the next layer's attention norm
    add_rmsnorm(a_.h.get(), a_.o.get(), w_.layers[l + 1].attn_norm.get(), rows, H,
                cfg_.rms_norm_eps, gemma, a_.x.get(), a_.xb.get(), stream_);
  } else {
    add(a_.h.get(), a_.o.get(), static_cast<size_t>(rows) * H, stream_);
  }
  timer_.mark("mlp", stream_);
}

}  // namespace xq::cuda
