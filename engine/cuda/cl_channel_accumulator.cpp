// ClAccumulator for XQuant-CL's per-channel (-ch) forms, as the CPU's CLChannelSequence
// (engine/cache/xquant_cl_channel.cpp) steps them, layer by layer for one workspace group:
// 1. the group's accumulator rows hold A_prev[l] of every position of a filled block;
// 2. the blocks the step fills at layer l: their deltas S_l - A_prev[l] (S_l of positions still
//    in the window from the window, the others from the step's rows), on the layer's basis in
//    the latent form, quantized per channel (16-bit layers: fp16 rows);
// 3. A_l = A_prev[l] + deq(delta) for the filled blocks, old and new;
// 4. the rows K and V are rebuilt from: A_l (or its norm, residual stream) for the positions in
//    blocks filled before the step, and S_l from the window for the ones that waited there
//    (the CPU reads the window before this step's block is quantized); the step's own rows are
//    overwritten by the model from their full-precision projections;
// 5. the step's rows past its last filled block wait in the window.
// Without the fp16 window (fp16_window false) the positions that waited in the window are read
// as the CPU's window_quantized reads them: per layer, their delta against the chain below
// (A_prev of the block where the step fills it, else the layer below's partial A, which the
// accumulator rows of an unfilled block carry) quantized per channel as one partial block,
// before step 3, and A_l = below + deq(delta) rebuilt in step 4 instead of S_l.
#include "engine/cuda/cl_accumulator.h"
#include "kernels/cuda/cl_ops.h"

namespace xq::cuda {

ClWindow ClAccumulator::window(int l) const {
  const GpuCacheLayout& layout = format_.layout();
  return {format_.pool().windows() + layout.cl.window_offset[l], layout.window_slot_bytes,
          cfg_.hidden_size, layout.group, layout.cl.window_value_bytes == 4};
}

ChannelSeqs ClAccumulator::step_seqs(const StepLayout& L, const int* d) const {
  return {reinterpret_cast<const AttnSeq*>(d + L.seqs), d + L.tables, d + chan_.slots};
}

void ClAccumulator::add_channel_layer(int m, const StepLayout& L, int gi, const int* d, float* acc,
                                      bool accumulate, cublasHandle_t blas, cudaStream_t stream) {
  const StepLayout::Group& g = L.groups[gi];
  const ChannelSegment& c = format_.layout().channel[m][0];
  const ChannelStore store = format_.channel_store(m, c);
  const int* seq = d + chan_.ws_seq[gi];
  const int H = cfg_.hidden_size;
  if (!format_.layout().cl.on_basis[m]) {
    add_step_blocks(store, step_seqs(L, d), seq, d + g.ws_pos, g.ws_rows, acc, H, accumulate,
                    stream);
    return;
  }
  // The latent in bf16, lifted by Ukv_m^T into the product's fp32 output. Rows of unfilled
  // positions keep stale latents; they reach only accumulator rows that no delta is taken
  // against and whose rebuilt rows are overwritten (window rows, the step's own rows).
  read_step_blocks(store, step_seqs(L, d), seq, d + g.ws_pos, g.ws_rows, zb_.get(), c.layout.width,
                   stream);
  matmul_nn_add(blas, zb_.get(), w_.layers[m].u_kv.get(), acc, g.ws_rows, c.layout.width, H,
                accumulate);
}

void ClAccumulator::window_partial(int m, const StepLayout& L, int gi, const int* d,
                                   const float* acc, bool subtract, cublasHandle_t blas,
                                   cudaStream_t stream) {
  const ClShape& s = format_.layout().cl;
  const StepLayout::Group& g = L.groups[gi];
  const int H = cfg_.hidden_size, G = format_.layout().group, bits = s.bits[m];
  const ChannelSeqs seqs = step_seqs(L, d);
  const int first = g.seq_begin, count = g.seq_end - g.seq_begin;
  const int* ws_row = d + g.seq_x_row;
  cl_window_deltas(window(m), seqs, first, count, ws_row, acc, subtract, part_.get(), stream);
  if (!s.on_basis[m]) {
    quantize_window_partial(part_.get(), H, G, bits, seqs, first, count, ws_row, part_.get(),
                            stream);
  } else {
    // On the layer's basis as the flushed blocks are: the bf16 delta projected, its latent
    // quantized, lifted back into part_. Rows that are no window position carry stale values
    // through the products; each product row depends on its own row only.
    const int Z = 2 * cfg_.kv_dim();
    const bf16* u = w_.layers[m].u_kv.get();
    to_bf16(part_.get(), static_cast<size_t>(g.ws_rows) * H, part_b_.get(), stream);
    matmul_nt(blas, part_b_.get(), u, zpart_.get(), g.ws_rows, H, Z);
    quantize_window_partial(zpart_.get(), Z, G, bits, seqs, first, count, ws_row, zb_.get(),
                            stream);
    matmul_nn_add(blas, zb_.get(), u, part_.get(), g.ws_rows, Z, H, false);
  }
  if (subtract) cl_window_add(acc, H, G, seqs, first, count, ws_row, part_.get(), stream);
}

void ClAccumulator::layer_group_channel(int l, int gi, const StepLayout& L, const int* d,
                                        const float* x_new, const float* residual_new, bf16* x,
                                        cublasHandle_t blas, cudaStream_t stream) {
  const GpuCacheLayout& layout = format_.layout();
  const ClShape& s = layout.cl;
  const StepLayout::Group& g = L.groups[gi];
  const int H = cfg_.hidden_size, G = layout.group, p = s.prev[l];
  float* acc = group_acc(l, gi);
  rebuild_below(l, L, gi, d, acc, blas, stream);
  const ClWindow win = window(l);
  const ChannelSeqs seqs = step_seqs(L, d);
  const float* src = s.residual ? residual_new : x_new;
  const int first = blocks_.group_first.at(gi), count = blocks_.group_first.at(gi + 1) - first;
  if (count > 0) {
    cl_block_deltas(src, H, win, seqs, d + chan_.blocks + 2 * first, count, first, g.seq_begin,
                    d + g.seq_x_row, acc, p >= 0, delta_.get(), stream);
    const size_t r0 = static_cast<size_t>(first) * G, n = static_cast<size_t>(count) * G;
    const int width = s.on_basis[l] ? 2 * cfg_.kv_dim() : H;
    const float* stored = delta_.get();
    if (s.on_basis[l]) {
      to_bf16(delta_.get() + r0 * H, n * H, delta_b_.get() + r0 * H, stream);
      matmul_nt(blas, delta_b_.get() + r0 * H, w_.layers[l].u_kv.get(), z_.get() + r0 * width,
                static_cast<int>(n), H, width);
      stored = z_.get();
    }
    if (!layout.channel[l].empty()) {
      // Staged block j is rows [j G, j G + G) of `stored`, named by its stand-in sequence j.
      const ChannelSeqs staged{reinterpret_cast<const AttnSeq*>(d + blocks_.seqs), d + L.tables,
                               d + blocks_.slots};
      quantize_channel_blocks(stored, width, format_.channel_store(l, layout.channel[l][0]), staged,
                              d + blocks_.blocks + 2 * first, count, stream);
    } else {
      const GpuPagePool& pool = format_.pool();
      quantize_rows(stored + r0 * width, static_cast<int>(n), layout.segments[l][0].layout,
                    pool.layer_base(l), pool.page_bytes(l),
                    RowMap{d + blocks_.row_page + r0, d + blocks_.row_slot + r0}, stream);
    }
  }
  const bool partial = quantized_window(gi);
  if (partial) window_partial(l, L, gi, d, acc, p >= 0, blas, stream);
  add_layer(l, L, gi, d, acc, p >= 0, blas, stream);
  const float* norm = s.residual ? w_.layers[l].attn_norm.get() : nullptr;
  const bool gemma = cfg_.arch == Arch::Gemma3;
  cl_rebuilt_rows(acc, g.ws_rows, H, d + g.ws_pos, norm, cfg_.rms_norm_eps, gemma, x, stream);
  const int seqs_n = g.seq_end - g.seq_begin;
  if (partial) {
    cl_window_partial_rows(part_.get(), H, G, seqs, g.seq_begin, seqs_n, d + g.seq_x_row, norm,
                           cfg_.rms_norm_eps, gemma, x, acc, stream);
  } else if (layout.fp16_window) {
    cl_window_rows(win, seqs, g.seq_begin, seqs_n, d + g.seq_x_row, norm, cfg_.rms_norm_eps, gemma,
                   x, stream);
  }
  cl_window_write(src, H, g.row_begin, g.rows, d + L.row_seq, win, seqs, stream);
}

}  // namespace xq::cuda
