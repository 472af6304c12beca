// ClAccumulator: XQuant-CL on the GPU. The CUDA model's workspace path rebuilds K and V of a
// group of sequences from X-wide bf16 rows; for XQuant-CL those rows are the running
// reconstruction A_l = A_prev[l] + deq(D_l) (lifted by Ukv_l^T in the latent form), kept in fp32
// for every workspace row of the step as the CPU keeps its running sum (xquant_cl_chain.h). The
// layer loop is outermost, so each group's accumulator rows persist from one layer to the next
// (place_cl_groups): each layer adds one dequantized row per position. Groups that do not fit
// the accumulator rebuild A_prev[l] from the cached chain at every layer instead.
// The write side is here too: a new row's delta at layer l is its X_l (or residual stream)
// minus its own A_prev[l], which the accumulator holds at its workspace row because the new
// rows' deltas of earlier layers were written to the cache and added like the past's.
// The per-channel (-ch) forms (cl_channel_accumulator.cpp) write deltas a block of G positions
// at a time, when the block fills, as the CPU does (xquant_cl_channel.cpp): the accumulator rows
// of every filled block hold A_l once layer l quantized it, and the positions still waiting in
// a layer's window are rebuilt from the window's S itself; without the fp16 window, from the
// chain's partial block instead (window_partial), whose A_l the accumulator rows of a block the
// step does not fill carry from layer to layer.
#pragma once

#include <cublas_v2.h>

#include <vector>

#include "engine/cuda/channel_step.h"
#include "engine/cuda/cuda_weights.h"
#include "engine/cuda/device_buffer.h"
#include "engine/cuda/gpu_cache.h"
#include "engine/cuda/step_layout.h"
#include "kernels/cuda/cl_channel_ops.h"

namespace xq::cuda {

class ClAccumulator {
 public:
  // `acc_rows`: accumulator rows per chain (grown to a step's largest group when smaller).
  ClAccumulator(const ModelConfig& cfg, const GpuCacheFormat& format, const CudaWeights& w,
                int acc_rows);
  // Room for steps of `rows` new rows in groups of up to `group_rows` workspace rows.
  void reserve(int rows, int group_rows);
  size_t bytes() const;
  // Before a step's layers (and before L's ints go to the device): where each of L's groups
  // keeps its accumulator rows; for the -ch forms, the step's filled blocks (chan: the step's
  // per-channel indices), appended to L's ints.
  void plan_step(StepLayout& L, const ChannelStep* chan);
  // Layer l of group gi: quantizes the group's new rows' deltas into the cache, brings the
  // group's accumulator to A_l and writes the rows K and V are rebuilt from into x
  // [ws_rows, hidden] (bf16; the layer's norm of A_l for the residual stream; zeros at padding).
  // x_new, residual_new: the step's normed X and residual stream [rows, hidden] (fp32).
  void layer_group(int l, int gi, const StepLayout& L, const int* d, const float* x_new,
                   const float* residual_new, bf16* x, cublasHandle_t blas, cudaStream_t stream);

 private:
  // acc (+)= layer m's cached rows of every workspace row of group gi, lifted to X space (the
  // -ch forms: the rows of the blocks filled by the end of the step).
  void add_layer(int m, const StepLayout& L, int gi, const int* d, float* acc, bool accumulate,
                 cublasHandle_t blas, cudaStream_t stream);
  // acc = A_prev[l] of group gi's rows when the group does not keep it across layers.
  void rebuild_below(int l, const StepLayout& L, int gi, const int* d, float* acc,
                     cublasHandle_t blas, cudaStream_t stream);
  // The -ch forms' layer_group (cl_channel_accumulator.cpp).
  void layer_group_channel(int l, int gi, const StepLayout& L, const int* d, const float* x_new,
                           const float* residual_new, bf16* x, cublasHandle_t blas,
                           cudaStream_t stream);
  // The -ch forms' per-channel layer m read into acc (on its basis: through zb_).
  void add_channel_layer(int m, const StepLayout& L, int gi, const int* d, float* acc,
                         bool accumulate, cublasHandle_t blas, cudaStream_t stream);
  // Without the fp16 window: part_ = A_m of group gi's window positions, their delta against
  // acc (A_prev; nothing at a chain's start, subtract false) quantized as a partial block.
  void window_partial(int m, const StepLayout& L, int gi, const int* d, const float* acc,
                      bool subtract, cublasHandle_t blas, cudaStream_t stream);
  bool quantized_window(int gi) const;  // group gi reads window positions from window_partial
  ClWindow window(int l) const;
  float* group_acc(int l, int gi) const;  // group gi's accumulator rows of l's chain
  ChannelSeqs step_seqs(const StepLayout& L, const int* d) const;

  const ModelConfig& cfg_;
  const GpuCacheFormat& format_;
  const CudaWeights& w_;
  int acc_rows_ = 0, rows_ = 0, group_rows_ = 0;
  DeviceBuffer<float> acc_;  // [chains][acc_rows_][hidden]
  ChannelStep chan_;         // -ch forms: the step's per-channel indices
  ClBlockStep blocks_;       // -ch forms: the step's filled blocks
  // The new rows' deltas [rows, hidden]; -ch forms: the filled blocks' [blocks G, hidden].
  DeviceBuffer<float> delta_;
  DeviceBuffer<bf16> delta_b_;
  DeviceBuffer<float> z_;  // their latent [rows, 2 kv_dim]
  DeviceBuffer<bf16> zb_;  // a layer's latent rows of a group, dequantized [group_rows, 2 kv_dim]
  std::vector<ClGroupRows> places_;
  // Without the fp16 window: the window positions' A [group_rows, hidden] (part_b_: bf16 of
  // their deltas, zpart_: their latent [group_rows, 2 kv_dim]); which groups have any.
  DeviceBuffer<float> part_;
  DeviceBuffer<bf16> part_b_;
  DeviceBuffer<float> zpart_;
  std::vector<char> window_groups_;
};

}  // namespace xq::cuda
