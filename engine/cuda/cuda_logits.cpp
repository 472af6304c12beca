// CudaModel's output of a step: the final norm and lm_head of the rows whose logits are asked
// for, as whole rows to the host or as row summaries drawn on the device.
#include <cstring>
#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_model.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cuda/sample_ops.h"

namespace xq::cuda {

void CudaModel::upload_picks(std::span<const SeqInput> batch) {
  const std::vector<int> pick = logit_rows(batch);
  pick_count_ = static_cast<int>(pick.size());
  pick_rows_.ensure(pick.size());  // a few ints per step: not worth a line in the budget
  check(cudaMemcpyAsync(pick_rows_.get(), pick.data(), pick.size() * sizeof(int),
                        cudaMemcpyHostToDevice, stream_),
        "pick upload");
}

void CudaModel::head_rows(int first, int k) {
  const int H = cfg_.hidden_size, V = cfg_.vocab_size;
  gather_rows(a_.h.get(), pick_rows_.get() + first, k, H, picked_.get(), stream_);
  rmsnorm(picked_.get(), w_.final_norm.get(), k, H, cfg_.rms_norm_eps, cfg_.arch == Arch::Gemma3,
          picked_.get(), a_.xb.get(), stream_);
  matmul_nt(blas_, a_.xb.get(), w_.head(), logits_.get(), k, H, V);
  softcap(logits_.get(), static_cast<size_t>(k) * V, cfg_.final_logit_softcap, stream_);
}

void CudaModel::output_logits(std::span<const SeqInput> batch, std::vector<float>& logits) {
  const int V = cfg_.vocab_size;
  // Only the rows whose logits are asked for go through the final norm and lm_head.
  upload_picks(batch);
  const int m = pick_count_;
  logits.resize(static_cast<size_t>(m) * V);
  for (int c = 0; c < m; c += logit_rows_) {
    const int k = std::min(logit_rows_, m - c);
    head_rows(c, k);
    check(cudaMemcpyAsync(host_logits_.get(), logits_.get(),
                          static_cast<size_t>(k) * V * sizeof(float), cudaMemcpyDeviceToHost,
                          stream_),
          "logits download");
    check(cudaStreamSynchronize(stream_), "forward");
    // Into the caller's vector on all cores: one thread copies ~10 GB/s, 64 rows of a 128k
    // vocabulary are 32 MiB.
    float* dst = logits.data() + static_cast<size_t>(c) * V;
    const float* src = host_logits_.get();
    parallel_for(k, hardware_threads(), 4, [&](int begin, int end) {
      std::memcpy(dst + static_cast<size_t>(begin) * V, src + static_cast<size_t>(begin) * V,
                  static_cast<size_t>(end - begin) * V * sizeof(float));
    });
  }
  summarized_rows_ = 0;
  timer_.mark("logits", stream_);
  check(cudaStreamSynchronize(stream_), "forward");
}

void CudaModel::summarize_logits(std::span<const SeqInput> batch,
                                 std::span<const RowDrawSpec> specs, size_t listable,
                                 std::vector<RowSummary>& out) {
  upload_picks(batch);
  const int m = pick_count_;
  if (m > summary_rows_ || static_cast<size_t>(m) != specs.size())
    throw std::invalid_argument("CudaModel: " + std::to_string(specs.size()) + " draw specs for " +
                                std::to_string(m) + " logits rows (at most " +
                                std::to_string(summary_rows_) + " summarized)");
  head_rows(0, m);
  const int K = kSummaryCandidates;
  SummaryHost& h = summary_host_;
  h.inv_t.resize(m);
  h.u01.resize(m);
  for (int r = 0; r < m; ++r) {
    h.inv_t[r] = specs[r].inv_temperature;
    h.u01[r] = specs[r].u01;
  }
  check(cudaMemcpyAsync(sum_inv_t_.get(), h.inv_t.data(), m * sizeof(float), cudaMemcpyHostToDevice,
                        stream_),
        "draw specs upload");
  check(cudaMemcpyAsync(sum_u01_.get(), h.u01.data(), m * sizeof(double), cudaMemcpyHostToDevice,
                        stream_),
        "draw specs upload");
  LogitSummaries dev{sum_ids_.get(), sum_vals_.get(),  sum_lse_.get(),
                     sum_t_.get(),   sum_drawn_.get(), sum_drawn_logit_.get()};
  summarize_logit_rows(logits_.get(), m, cfg_.vocab_size, static_cast<int>(listable), K,
                       sum_inv_t_.get(), sum_u01_.get(), dev, stream_);
  h.ids.resize(static_cast<size_t>(m) * K);
  h.vals.resize(static_cast<size_t>(m) * K);
  h.lse.resize(m);
  h.sum_t.resize(m);
  h.drawn.resize(m);
  h.drawn_logit.resize(m);
  auto down = [&](void* dst, const void* src, size_t bytes) {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "summary download");
  };
  down(h.ids.data(), sum_ids_.get(), h.ids.size() * sizeof(int));
  down(h.vals.data(), sum_vals_.get(), h.vals.size() * sizeof(float));
  down(h.lse.data(), sum_lse_.get(), m * sizeof(double));
  down(h.sum_t.data(), sum_t_.get(), m * sizeof(double));
  down(h.drawn.data(), sum_drawn_.get(), m * sizeof(int));
  down(h.drawn_logit.data(), sum_drawn_logit_.get(), m * sizeof(float));
  timer_.mark("logits", stream_);
  check(cudaStreamSynchronize(stream_), "forward");
  summarized_rows_ = m;
  out.resize(m);
  for (int r = 0; r < m; ++r) {
    RowSummary& s = out[r];
    s.ids.clear();
    s.logits.clear();
    for (int i = 0; i < K && h.ids[r * K + i] >= 0; ++i) {
      s.ids.push_back(h.ids[r * K + i]);
      s.logits.push_back(h.vals[r * K + i]);
    }
    s.lse = h.lse[r];
    s.sum_t = h.sum_t[r];
    s.drawn = h.drawn[r];
    s.drawn_logit = h.drawn_logit[r];
  }
}

void CudaModel::copy_logit_rows(std::span<const int> rows, std::vector<float>& out) {
  const size_t V = cfg_.vocab_size;
  out.resize(rows.size() * V);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= summarized_rows_)
      throw std::out_of_range("CudaModel: logits row " + std::to_string(rows[i]) +
                              " is not on the device");
    check(cudaMemcpyAsync(out.data() + i * V, logits_.get() + static_cast<size_t>(rows[i]) * V,
                          V * sizeof(float), cudaMemcpyDeviceToHost, stream_),
          "logits row download");
  }
  check(cudaStreamSynchronize(stream_), "logits rows");
}

}  // namespace xq::cuda
