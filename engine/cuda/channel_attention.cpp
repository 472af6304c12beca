// CudaModel's per-channel formats: KIVI (keys per channel in blocks of G tokens, values per
// token, the unfilled key block and, with the fp16 window, the last G values in fp16) read into
// the fp16 workspace that paged attention takes, and the per-channel columns of XQuant's cached
// row (xquant-ch's X, the per-channel K latent) read into the rematerialization workspace.
// Blocks are quantized by the step that fills them, after every group's attention has read
// the windows.
#include "engine/cuda/cuda_model.h"

namespace xq::cuda {

ChannelSeqs CudaModel::channel_seqs(const StepLayout& L, const int* d) const {
  return {reinterpret_cast<const AttnSeq*>(d + L.seqs), d + L.tables, d + chan_.slots};
}

void CudaModel::append_channels(int l, const StepLayout& L, const int* d, const float* x) {
  const int C = format_->layout().row_width;
  for (const ChannelSegment& s : format_->layout().channel[l])
    append_channel_rows(x + s.col, C, L.rows, d + L.row_seq, format_->channel_store(l, s),
                        channel_seqs(L, d), d + chan_.blocks, chan_.num_blocks, stream_);
}

void CudaModel::read_channel_past(int l, const StepLayout& L, size_t group, const int* d) {
  const StepLayout::Group& g = L.groups[group];
  const GpuCacheLayout& layout = format_->layout();
  const int C = layout.row_width;
  const WindowRead tail{false, !layout.fp16_window};
  for (const ChannelSegment& s : layout.channel[l]) {
    const ChannelStore store = format_->channel_store(l, s);
    read_channel_blocks(store, channel_seqs(L, d), d + chan_.ws_seq[group], d + g.ws_pos, g.ws_rows,
                        r_.x.get() + s.col, C, stream_);
    read_channel_window(store, channel_seqs(L, d), g.seq_begin, g.seq_end - g.seq_begin,
                        d + g.seq_x_row, tail, r_.x.get() + s.col, C, stream_);
  }
}

void CudaModel::kivi_attention(int l, const StepLayout& L, const int* d, const AttnParams& p) {
  const GpuCacheLayout& layout = format_->layout();
  const GpuPagePool& pool = format_->pool();
  const int Q = cfg_.q_dim(), KV = cfg_.kv_dim();
  const KvPages ws{r_.k.get(), r_.v.get(), static_cast<size_t>(kPageRows) * KV, KV};
  const ChannelStore keys = format_->channel_store(l, layout.channel[l][0]);
  const RowSegment& values = layout.segments[l][0];
  uint8_t* value_base = pool.layer_base(l) + values.offset;
  const bool ring = !layout.value_window.empty();
  const ChannelSeqs seqs = channel_seqs(L, d);
  for (size_t gi = 0; gi < L.groups.size(); ++gi) {
    const StepLayout::Group& g = L.groups[gi];
    const size_t r0 = g.row_begin;
    const int count = g.seq_end - g.seq_begin;
    // Values: the per-token rows (bf16, then fp16; rows still in the ring read stale pages and
    // are overwritten from the ring next), keys: the filled blocks and the unfilled one.
    dequantize_rows(value_base, pool.page_bytes(l), values.layout, g.ws_rows,
                    RowMap{d + g.src_page, d + g.src_slot}, r_.x.get(), stream_, KV);
    bf16_to_half(r_.x.get(), static_cast<size_t>(g.ws_rows) * KV, r_.v.get(), stream_);
    if (ring)
      read_channel_window(format_->value_ring(l), seqs, g.seq_begin, count, d + g.seq_x_row,
                          WindowRead{true, false}, r_.v.get(), KV, stream_);
    read_channel_blocks(keys, seqs, d + chan_.ws_seq[gi], d + g.ws_pos, g.ws_rows, r_.k.get(), KV,
                        stream_);
    read_channel_window(keys, seqs, g.seq_begin, count, d + g.seq_x_row,
                        WindowRead{false, !layout.fp16_window}, r_.k.get(), KV, stream_);
    timer_.mark("dequantize", stream_);
    write_kv_rows(a_.k.get() + r0 * KV, a_.v.get() + r0 * KV, g.rows, KV,
                  RowMap{d + g.new_page, d + g.new_slot}, ws, stream_);
    paged_attention(a_.q.get() + r0 * Q, a_.attn.get() + r0 * Q, g.rows, d + g.row_seq,
                    reinterpret_cast<const AttnSeq*>(d + g.seqs), d + g.tables, ws, p);
    timer_.mark("attention", stream_);
  }
  append_channel_rows(a_.k.get(), KV, L.rows, d + L.row_seq, keys, seqs, d + chan_.blocks,
                      chan_.num_blocks, stream_);
  if (ring) {
    // Values leaving the ring are quantized from their fp16 rows, then the ring takes the new.
    const ChannelStore vr = format_->value_ring(l);
    gather_ring_rows(a_.v.get(), KV, vr, seqs, d + chan_.spill, chan_.num_spill, r_.k32.get(),
                     stream_);
    quantize_rows(r_.k32.get(), chan_.num_spill, values.layout, value_base, pool.page_bytes(l),
                  RowMap{d + chan_.spill_page, d + chan_.spill_slot}, stream_);
    write_ring_rows(a_.v.get(), KV, L.rows, d + L.row_seq, vr, seqs, stream_);
  } else {
    quantize_rows(a_.v.get(), L.rows, values.layout, value_base, pool.page_bytes(l),
                  RowMap{d + L.new_page, d + L.new_slot}, stream_);
  }
  timer_.mark("quantize", stream_);
}

}  // namespace xq::cuda
