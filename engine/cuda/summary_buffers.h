// The row summaries' buffers: a step's draw specs and row edits go up and its summaries come down
// each in one copy through pinned memory (a copy from or to pageable memory is staged by the
// driver and costs ~10 us: eight of them per step were a visible share of a batch-1 decode step),
// and the summary kernels' scratch. A step with edits brings down, after the summaries of the
// edited rows, those of the rows before their edits and each edited logit's value before it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "engine/cuda/device_buffer.h"
#include "engine/cuda/pinned_buffer.h"
#include "kernels/cuda/sample_ops.h"

namespace xq::cuda {

class SummaryBuffers {
 public:
  // Room for `rows` rows of k candidates over a vocabulary of `vocab` ids, and `edits` edits.
  void reserve(int rows, int k, int vocab, int edits) {
    rows_ = rows;
    k_ = k;
    edits_ = edits;
    dev_.reset(down_capacity() + up_capacity());
    host_.reset(down_capacity() + up_capacity());
    scratch_.reset(summary_scratch_bytes(rows, vocab, k));
  }
  int rows() const { return rows_; }
  int edit_capacity() const { return edits_; }

  // The specs of m rows into pinned memory (then upload() sends them).
  float* inv_t(int m) { return reinterpret_cast<float*>(spec_host() + sizeof(double) * m); }
  double* u01() { return reinterpret_cast<double*>(spec_host()); }
  // The edits of m rows into pinned memory, after their specs.
  RowEdit* edits(int m) { return reinterpret_cast<RowEdit*>(spec_host() + spec_bytes(m)); }
  void upload(int m, int edits, cudaStream_t stream) {
    check(cudaMemcpyAsync(spec_dev(), spec_host(), spec_bytes(m) + edits * sizeof(RowEdit),
                          cudaMemcpyHostToDevice, stream),
          "draw specs upload");
  }
  const RowEdit* dev_edits(int m) const {
    return reinterpret_cast<const RowEdit*>(spec_dev() + spec_bytes(m));
  }
  const double* dev_u01() const { return reinterpret_cast<const double*>(spec_dev()); }
  const float* dev_inv_t(int m) const {
    return reinterpret_cast<const float*>(spec_dev() + sizeof(double) * m);
  }
  void* scratch() const { return scratch_.get(); }

  // Where the kernels write m rows' summaries: packed, so that one copy brings them down.
  LogitSummaries device(int m) const { return carve(dev_.get(), m); }
  // With edits: the summaries before them, and the edited logits' values before them.
  LogitSummaries raw_device(int m) const { return carve(dev_.get() + summary_bytes(m), m); }
  float* dev_unedited(int m) const {
    return reinterpret_cast<float*>(dev_.get() + 2 * summary_bytes(m));
  }
  void download(int m, int edits, cudaStream_t stream) {
    const size_t bytes =
        edits > 0 ? 2 * summary_bytes(m) + edits * sizeof(float) : summary_bytes(m);
    check(cudaMemcpyAsync(host_.get(), dev_.get(), bytes, cudaMemcpyDeviceToHost, stream),
          "summary download");
  }
  // The host's copy (valid once the stream has synchronized after download()).
  LogitSummaries host(int m) const { return carve(host_.get(), m); }
  LogitSummaries host_raw(int m) const { return carve(host_.get() + summary_bytes(m), m); }
  const float* host_unedited(int m) const {
    return reinterpret_cast<const float*>(host_.get() + 2 * summary_bytes(m));
  }

 private:
  // lse, sum_t (doubles) first, then ids, logits, drawn, drawn_logit.
  size_t summary_bytes(int m) const {
    return static_cast<size_t>(m) * (2 * sizeof(double) + k_ * (sizeof(int) + sizeof(float)) +
                                     sizeof(int) + sizeof(float));
  }
  static size_t spec_bytes(int m) { return static_cast<size_t>(m) * (sizeof(double) + sizeof(float)); }
  LogitSummaries carve(uint8_t* base, int m) const {
    LogitSummaries s;
    s.lse = reinterpret_cast<double*>(base);
    s.sum_t = s.lse + m;
    s.ids = reinterpret_cast<int*>(s.sum_t + m);
    s.logits = reinterpret_cast<float*>(s.ids + static_cast<size_t>(m) * k_);
    s.drawn = reinterpret_cast<int*>(s.logits + static_cast<size_t>(m) * k_);
    s.drawn_logit = reinterpret_cast<float*>(s.drawn + m);
    return s;
  }
  // What comes down: the summaries, those before the edits, the edited logits' values.
  size_t down_capacity() const { return 2 * summary_bytes(rows_) + edits_ * sizeof(float); }
  size_t up_capacity() const { return spec_bytes(rows_) + edits_ * sizeof(RowEdit); }
  // The specs sit after what comes down: u01 (doubles), then inv_t, then the edits.
  uint8_t* spec_dev() const { return dev_.get() + down_capacity(); }
  uint8_t* spec_host() const { return host_.get() + down_capacity(); }

  int rows_ = 0, k_ = 0, edits_ = 0;
  DeviceBuffer<uint8_t> dev_, scratch_;
  PinnedBuffer<uint8_t> host_;
};

}  // namespace xq::cuda
