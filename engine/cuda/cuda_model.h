// CudaModel: the transformer on one CUDA GPU (Llama/Mistral/Qwen2/3 and Gemma 3 blocks), checked
// against CpuModel. Weights bf16, activations and the residual stream fp32, matmuls through
// cuBLAS. Its cache (engine/cuda/gpu_cache.h) lives in a page pool on the device sized from
// --gpu-memory-utilization after weights and workspace are allocated. XQuant rematerializes the
// past's K and V each step from the cached X: dequantize to bf16, one matmul per projection for
// all of a group's rows, then the key path (bias, k-norm, RoPE) as for new tokens.
#pragma once

#include <cublas_v2.h>

#include <memory>
#include <span>
#include <vector>

#include "engine/cuda/channel_step.h"
#include "engine/cuda/cl_accumulator.h"
#include "engine/cuda/cuda_weights.h"
#include "engine/cuda/gpu_cache.h"
#include "engine/cuda/graph_cache.h"
#include "engine/cuda/pinned_buffer.h"
#include "engine/cuda/summary_buffers.h"
#include "engine/cuda/stage_timer.h"
#include "engine/cuda/step_layout.h"
#include "engine/model/model.h"

namespace xq::cuda {

class CudaModel : public Model {
 public:
  CudaModel(const ModelConfig& cfg, const WeightSource& src, const EngineOptions& opts);
  ~CudaModel() override;

  const ModelConfig& config() const override { return cfg_; }
  const CacheFormat& cache_format() const override { return *format_; }
  void forward(std::span<const SeqInput> batch, std::vector<float>& logits) override;
  bool summarizes_logits() const override { return true; }
  void forward_summarized(std::span<const SeqInput> batch, std::span<const RowDrawSpec> specs,
                          size_t listable, std::vector<RowSummary>& out) override;
  void copy_logit_rows(std::span<const int> rows, std::vector<float>& out) override;
  size_t weight_bytes() const override { return w_.bytes(); }
  double device_cache_bytes() const override { return cache_bytes_; }
  // Device memory taken besides weights and cache: activations, the rematerialization
  // workspace, cuBLAS's workspace.
  size_t workspace_bytes() const;

 private:
  struct Activations {
    DeviceBuffer<float> h, x, q, k, v, attn, o;
    DeviceBuffer<float> gate;  // a stacked product: [gate | up] rows, or [q | k | v] rows
    DeviceBuffer<bf16> xb, attnb, act;
    DeviceBuffer<float> z;  // the GQA latent of the new rows, [rows, 2 kv_dim]
    DeviceBuffer<bf16> zb;
  };
  struct Remat {  // XQuant's per-step K/V of the past, one group of sequences at a time
    DeviceBuffer<bf16> x;
    DeviceBuffer<float> k32, v32;
    DeviceBuffer<half> k, v;
    // Folded values: softmax weights, per-head weighted means of X, their projections.
    DeviceBuffer<float> probs, t;
    DeviceBuffer<bf16> y;
  };
  void reserve_rows(int rows);
  void reserve_remat(int rows);
  // Split-context attention (engine/cuda/split_attention.cpp). setup_attention_paths reads the
  // XQ_CUDA_* switches (graphs, fold, fused decode) and sizes the split partials for steps of up
  // to `rows` rows (`decode_rows` for the fused decode); then the fp16 K/V attention, and
  // XQuant's fused decode for steps of one new row per sequence.
  void setup_attention_paths(int rows, int decode_rows);
  // Writes `out` (fp32 rows), or where out_bf16 is given and the split kernels run, out_bf16
  // in the same layout instead (returns true then).
  // past_rope: the workspace's rows before each sequence's start hold the rebuild's raw bf16
  // K and V, rotated and converted by the attention (paged_attention_splits).
  bool paged_attention(const float* q, float* out, int rows, const int* row_seq,
                       const AttnSeq* seqs, const int* tables, const KvPages& pages,
                       const AttnParams& p, bf16* out_bf16 = nullptr,
                       const RopeAngles* past_rope = nullptr);
  // Layer l's rebuilt K and V can stay raw bf16 for paged_attention's past_rope (no bias or
  // k-norm, the tensor-core split kernel runs for `rows` query rows).
  bool rope_in_attention(int l, int rows, const AttnParams& p) const;
  // The GQA latent's decode attention with V folded in (paged_attention_splits' fold): the
  // workspace holds raw K and the rows' latents; writes a_.attn's rows of the group.
  void latent_fold_attention(int l, const StepLayout::Group& g, const int* d, const AttnParams& p,
                             const KvPages& ws, const RopeAngles& angles);
  int latent_fold_splits(int rows) const;  // 0: the partials cannot hold one split
  // `seqs`: the AttnSeq array of the layer's pool (L.seqs, or L.ring_seqs for a ring layer).
  void fused_decode(int l, const StepLayout& L, const AttnSeq* seqs, const int* d,
                    const AttnParams& p);
  // The split counts this step's kernels take for `rows` query rows (0: that kernel is unused).
  int paged_splits(int rows) const;
  int fused_splits(int rows) const;
  void attention_block(int l, const StepLayout& L, const int* d);
  void remat_attention(int l, const StepLayout& L, const int* d, const AttnParams& p);
  // The per-channel formats (engine/cuda/channel_attention.cpp): KIVI's step (K from per-channel
  // blocks, V from per-token rows, both into the fp16 workspace, then paged attention); the
  // per-channel columns of the cached row, appended after the step and read into the
  // rematerialization workspace (r_.x) for a group.
  void kivi_attention(int l, const StepLayout& L, const int* d, const AttnParams& p);
  void append_channels(int l, const StepLayout& L, const int* d, const float* x);
  void read_channel_past(int l, const StepLayout& L, size_t group, const int* d);
  ChannelSeqs channel_seqs(const StepLayout& L, const int* d) const;
  void folded_values(int l, const StepLayout::Group& g, const int* d, const AttnParams& p,
                     const KvPages& ws);
  // The K or V rebuild's input in the remat workspace (X, or a latent half: rows `ld` apart,
  // `in` wide) and the matrix it is multiplied by.
  struct RematOperand {
    const bf16* x;
    int ld, in;
    const bf16* w;
  };
  RematOperand remat_operand(int l, bool values) const;
  // K or V of `rows` cached rows in the remat workspace, fp32.
  void remat_projection(int l, bool values, int rows, float* out);
  // V of `rows` cached rows into the fp16 workspace (r_.v); K, with RoPE at `pos`, into r_.k.
  // `raw`: the matmuls' bf16 output straight into the workspace (rope_in_attention).
  void remat_values(int l, int rows, bool raw = false);
  void remat_keys(int l, int rows, const int* pos, bool raw = false);
  bool can_fold(const StepLayout::Group& g) const;
  void mlp_block(int l, int rows);
  void project(const DeviceBuffer<float>& bias, const bf16* x, MatrixView w, float* y, int rows,
               int in, int out);
  // k-norm / q-norm (where the model has one) and RoPE of `rows` rows of t, in place, or into
  // `out` as fp16.
  void norm_rope(int l, float* t, int rows, int heads, const DeviceBuffer<float>& norm,
                 const int* pos, half* out = nullptr);
  // The layers of a step, caches updated; false when no input has tokens.
  bool run_layers(std::span<const SeqInput> batch);
  // The rows whose logits the step returns (logit_rows), to the device.
  void upload_picks(std::span<const SeqInput> batch);
  // Final norm and lm_head of picked rows [first, first + k) into logits_ rows [0, k).
  void head_rows(int first, int k);
  void output_logits(std::span<const SeqInput> batch, std::vector<float>& logits);
  void summarize_logits(std::span<const SeqInput> batch, std::span<const RowDrawSpec> specs,
                        size_t listable, std::vector<RowSummary>& out);
  // The specs' edits, row by row, into the summary buffers' pinned upload; returns their count.
  int pack_edits(std::span<const RowDrawSpec> specs, size_t listable);

  ModelConfig cfg_;
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  CudaWeights w_;
  DeviceBuffer<double> rope_global_, rope_local_;
  DeviceBuffer<float2> rope_tab_global_, rope_tab_local_;  // rope_table of each, or empty
  int rope_positions_ = 0;
  RopeAngles rope_angles(int layer) const;
  Activations a_;
  Remat r_;
  DeviceBuffer<float> split_ml_, split_acc_;  // SplitPartials of one launch
  GraphCache graphs_;                         // decode steps, by batch size and split counts
  const int* graph_ints_ = nullptr;           // step_ints_ when the graphs were captured
  bool graphs_on_ = true;
  bool attn_mma_ = true;  // paged attention on the tensor cores where the head size allows
  bool attn_rope_ = true;  // rebuilt keys rotated inside the attention (rope_in_attention)
  bool attn_fold_ = false;  // the latent's V folded inside the attention (latent_fold_attention)
  bool fold_ = true;         // decode folds V after the softmax (else rebuilds it with a matmul)
  bool fused_ok_ = false;    // the format and shape run xquant_decode_splits
  int fused_max_rows_ = 0;   // decode steps of at most this many rows take it
  bool step_fused_ = false;  // this step runs fused_decode
  int step_max_len_ = 0;     // the longest sequence of the step (positions, new rows included)
  DeviceBuffer<uint8_t> blas_workspace_;
  DeviceBuffer<int> step_ints_, pick_rows_;
  DeviceBuffer<float> picked_, logits_;
  PinnedBuffer<float> host_logits_;  // where logits_ lands on the host, at full bus speed
  SummaryBuffers summaries_;  // row summaries: specs up, summaries down, scratch
  int summary_rows_ = 0;     // logits rows a summarized step keeps on the device
  int summarized_rows_ = 0;  // rows of the last step's logits_ that copy_logit_rows may read
  int pick_count_ = 0;       // logits rows of the step
  bool step_decode_ = false;
  int rows_capacity_ = 0, remat_capacity_ = 0, logit_rows_ = 0;
  int fold_rows_ = 0;  // new rows a folded group may have (decode: one per sequence)
  std::unique_ptr<GpuCacheFormat> format_;
  std::unique_ptr<ClAccumulator> cl_;  // XQuant-CL's running reconstruction of the step's rows
  ChannelStep chan_;                   // this step's arrays of a per-channel format
  StageTimer timer_;
  double cache_bytes_ = 0;
};

}  // namespace xq::cuda
