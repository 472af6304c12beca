#include "engine/cuda/cl_accumulator.h"

#include <algorithm>
#include <stdexcept>

#include "kernels/cuda/cl_channel_ops.h"
#include "kernels/cuda/cl_ops.h"

namespace xq::cuda {

ClAccumulator::ClAccumulator(const ModelConfig& cfg, const GpuCacheFormat& format,
                             const CudaWeights& w, int acc_rows)
    : cfg_(cfg), format_(format), w_(w), acc_rows_(acc_rows) {}

void ClAccumulator::reserve(int rows, int group_rows) {
  const ClShape& s = format_.layout().cl;
  const size_t H = cfg_.hidden_size, Z = 2 * static_cast<size_t>(cfg_.kv_dim());
  if (group_rows > acc_rows_ || acc_.empty()) {
    acc_rows_ = std::max(acc_rows_, group_rows);
    acc_.reset(static_cast<size_t>(s.chains) * acc_rows_ * H);
  }
  if (rows > rows_) {
    rows_ = rows;
    delta_.reset(rows_ * H);
    if (s.latent) {
      delta_b_.reset(rows_ * H);
      z_.reset(rows_ * Z);
    }
  }
  if (group_rows > group_rows_) {
    group_rows_ = group_rows;
    if (s.latent) zb_.reset(group_rows_ * Z);
    if (s.per_channel && !format_.layout().fp16_window) {
      part_.reset(group_rows_ * H);
      if (s.latent) {
        part_b_.reset(group_rows_ * H);
        zpart_.reset(group_rows_ * Z);
      }
    }
  }
}

size_t ClAccumulator::bytes() const {
  return acc_.bytes() + delta_.bytes() + delta_b_.bytes() + z_.bytes() + zb_.bytes() +
         part_.bytes() + part_b_.bytes() + zpart_.bytes();
}

void ClAccumulator::plan_step(StepLayout& L, const ChannelStep* chan) {
  std::vector<int> group_rows;
  for (const StepLayout::Group& g : L.groups) group_rows.push_back(g.ws_rows);
  int staged = L.rows;
  if (format_.layout().cl.per_channel) {
    if (chan == nullptr) throw std::logic_error("XQuant-CL -ch: a step without its blocks");
    chan_ = *chan;
    blocks_ = build_cl_block_step(L, chan_, format_.layout().group);
    staged = blocks_.num_blocks * format_.layout().group;
    // A group has window positions when one of its sequences starts inside a block.
    window_groups_.assign(L.groups.size(), 0);
    const int G = format_.layout().group;
    for (size_t gi = 0; gi < L.groups.size(); ++gi)
      for (int i = L.groups[gi].seq_begin; i < L.groups[gi].seq_end; ++i)
        window_groups_[gi] |= L.ints[L.seqs + 4 * i + 2] % G != 0;
  }
  reserve(staged, L.max_ws_rows);
  places_ = place_cl_groups(group_rows, acc_rows_);
}

void ClAccumulator::add_layer(int m, const StepLayout& L, int gi, const int* d, float* acc,
                              bool accumulate, cublasHandle_t blas, cudaStream_t stream) {
  if (!format_.layout().channel[m].empty())
    return add_channel_layer(m, L, gi, d, acc, accumulate, blas, stream);
  const StepLayout::Group& g = L.groups[gi];
  const GpuPagePool& pool = format_.pool();
  const QuantRowLayout& rl = format_.layout().segments[m][0].layout;
  const RowMap rows{d + g.cache_page, d + g.src_slot};
  const int H = cfg_.hidden_size;
  if (!format_.layout().cl.on_basis[m]) {
    dequantize_rows_add(pool.layer_base(m), pool.page_bytes(m), rl, g.ws_rows, rows, acc, H,
                        accumulate, stream);
    return;
  }
  // The latent delta in bf16, lifted by Ukv_m^T and added in the product's fp32 output. Padding
  // rows (no cache row) keep stale latents: they only reach the accumulator's padding rows,
  // which nothing reads (cl_rebuilt_rows writes zeros there).
  dequantize_rows(pool.layer_base(m), pool.page_bytes(m), rl, g.ws_rows, rows, zb_.get(), stream);
  matmul_nn_add(blas, zb_.get(), w_.layers[m].u_kv.get(), acc, g.ws_rows, rl.width, H, accumulate);
}

float* ClAccumulator::group_acc(int l, int gi) const {
  const size_t H = cfg_.hidden_size;
  const size_t chain = format_.layout().cl.chain[l];
  return acc_.get() + (chain * acc_rows_ + places_.at(gi).offset) * H;
}

void ClAccumulator::rebuild_below(int l, const StepLayout& L, int gi, const int* d, float* acc,
                                  cublasHandle_t blas, cudaStream_t stream) {
  const ClShape& s = format_.layout().cl;
  if (places_.at(gi).resident || s.prev[l] < 0) return;
  // A_p from scratch: the chain's base, then each later layer of the chain up to p.
  std::vector<int> chain;
  for (int m = s.prev[l]; m >= 0; m = s.prev[m]) chain.push_back(m);
  // Without the fp16 window the window positions' partial chain is replayed alongside.
  const bool partial = s.per_channel && quantized_window(gi);
  const StepLayout::Group& g = L.groups[gi];
  for (size_t i = chain.size(); i-- > 0;) {
    const bool below = i + 1 < chain.size();
    if (partial) window_partial(chain[i], L, gi, d, acc, below, blas, stream);
    add_layer(chain[i], L, gi, d, acc, below, blas, stream);
    if (partial) {
      cl_window_partial_rows(part_.get(), cfg_.hidden_size, format_.layout().group, step_seqs(L, d),
                             g.seq_begin, g.seq_end - g.seq_begin, d + g.seq_x_row, nullptr, 0.0f,
                             false, nullptr, acc, stream);
    }
  }
}

bool ClAccumulator::quantized_window(int gi) const {
  return !format_.layout().fp16_window && window_groups_.at(gi);
}

void ClAccumulator::layer_group(int l, int gi, const StepLayout& L, const int* d,
                                const float* x_new, const float* residual_new, bf16* x,
                                cublasHandle_t blas, cudaStream_t stream) {
  const ClShape& s = format_.layout().cl;
  if (s.per_channel) return layer_group_channel(l, gi, L, d, x_new, residual_new, x, blas, stream);
  const StepLayout::Group& g = L.groups[gi];
  const size_t H = cfg_.hidden_size;
  float* acc = group_acc(l, gi);
  const int p = s.prev[l];
  rebuild_below(l, L, gi, d, acc, blas, stream);
  // The new rows' deltas against their own A_p (nothing for a chain's start), on the layer's
  // basis where it has one, into the cache.
  const float* src = (s.residual ? residual_new : x_new) + static_cast<size_t>(g.row_begin) * H;
  cl_new_deltas(src, static_cast<int>(H), acc, RowMap{d + g.new_page, d + g.new_slot}, g.rows,
                static_cast<int>(H), p >= 0, delta_.get(), stream);
  const float* stored = delta_.get();
  const QuantRowLayout& rl = format_.layout().segments[l][0].layout;
  if (s.on_basis[l]) {
    to_bf16(delta_.get(), static_cast<size_t>(g.rows) * H, delta_b_.get(), stream);
    matmul_nt(blas, delta_b_.get(), w_.layers[l].u_kv.get(), z_.get(), g.rows, static_cast<int>(H),
              rl.width);
    stored = z_.get();
  }
  const GpuPagePool& pool = format_.pool();
  const RowMap new_rows{d + L.new_page + g.row_begin, d + L.new_slot + g.row_begin};
  quantize_rows(stored, g.rows, rl, pool.layer_base(l), pool.page_bytes(l), new_rows, stream);
  // A_l of every row, past and new, then what K and V are rebuilt from.
  add_layer(l, L, gi, d, acc, p >= 0, blas, stream);
  const bool gemma = cfg_.arch == Arch::Gemma3;
  cl_rebuilt_rows(acc, g.ws_rows, static_cast<int>(H), d + g.ws_pos,
                  s.residual ? w_.layers[l].attn_norm.get() : nullptr, cfg_.rms_norm_eps, gemma, x,
                  stream);
}

}  // namespace xq::cuda
