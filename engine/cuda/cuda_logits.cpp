// CudaModel's last stage: the final norm and lm_head of the rows a step returns, then either
// their logits to the host, or per row a summary the sampler draws from (kernels/cuda/
// sample_rows.cu) with the logits kept on the device for the rows that need them whole.
#include <algorithm>
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
  const int K = kSummaryCandidates, V = cfg_.vocab_size;
  SummaryBuffers& b = summaries_;
  float* inv_t = b.inv_t(m);
  double* u01 = b.u01();
  const int n_edits = pack_edits(specs, listable);
  bool raw = false;  // some row's logprobs want its summary before the edits
  for (int r = 0; r < m; ++r) {
    inv_t[r] = specs[r].inv_temperature;
    u01[r] = specs[r].u01;
    raw = raw || (specs[r].edited && specs[r].raw_summary && !specs[r].edits.empty());
  }
  b.upload(m, n_edits, stream_);
  const int L = static_cast<int>(listable);
  if (raw)
    summarize_logit_rows(logits_.get(), m, V, L, K, b.dev_inv_t(m), b.dev_u01(), b.scratch(),
                         b.raw_device(m), stream_);
  apply_row_edits(logits_.get(), V, b.dev_edits(m), n_edits, b.dev_unedited(m), stream_);
  summarize_logit_rows(logits_.get(), m, V, L, K, b.dev_inv_t(m), b.dev_u01(), b.scratch(),
                       b.device(m), stream_);
  // copy_logit_rows hands out the model's rows: the draws that still need theirs edit them.
  restore_row_edits(logits_.get(), V, b.dev_edits(m), n_edits, b.dev_unedited(m), stream_);
  b.download(m, n_edits, stream_);
  timer_.mark("logits", stream_);
  check(cudaStreamSynchronize(stream_), "forward");
  summarized_rows_ = m;
  out.resize(m);
  const LogitSummaries h = b.host(m), hr = b.host_raw(m);
  const float* unedited = b.host_unedited(m);
  auto fill = [&](const LogitSummaries& from, int r, std::vector<int>& ids,
                  std::vector<float>& logits) {
    ids.clear();
    logits.clear();
    for (int i = 0; i < K && from.ids[r * K + i] >= 0; ++i) {
      ids.push_back(from.ids[r * K + i]);
      logits.push_back(from.logits[r * K + i]);
    }
  };
  int e = 0;  // the row's first edit in the packed list
  for (int r = 0; r < m; ++r) {
    RowSummary& s = out[r];
    fill(h, r, s.ids, s.logits);
    s.lse = h.lse[r];
    s.sum_t = h.sum_t[r];
    s.drawn = h.drawn[r];
    s.drawn_logit = h.drawn_logit[r];
    const RowDrawSpec& spec = specs[r];
    s.edited = spec.edited;
    s.unedited.clear();
    s.has_raw = false;
    s.raw_ids.clear();
    s.raw_logits.clear();
    s.raw_lse = 0.0;
    if (!spec.edited) continue;
    for (const LogitEdit& le : spec.edits) s.unedited.emplace_back(le.id, unedited[e++]);
    if (spec.raw_summary && !spec.edits.empty()) {
      s.has_raw = true;
      fill(hr, r, s.raw_ids, s.raw_logits);
      s.raw_lse = hr.lse[r];
    }
  }
}

// The kernel reads LogitEdit's op bits as they are.
static_assert(LogitEdit::kRep == 1 && LogitEdit::kSub == 2 && LogitEdit::kAdd == 4 &&
              LogitEdit::kBan == 8);

int CudaModel::pack_edits(std::span<const RowDrawSpec> specs, size_t listable) {
  const int m = static_cast<int>(specs.size());
  size_t n = 0;
  for (const RowDrawSpec& s : specs) n += s.edited ? s.edits.size() : 0;
  if (n > static_cast<size_t>(summaries_.edit_capacity()))
    throw std::invalid_argument("CudaModel: " + std::to_string(n) +
                                " logit edits in a step (at most " +
                                std::to_string(summaries_.edit_capacity()) + ")");
  RowEdit* out = summaries_.edits(m);
  for (int r = 0; r < m; ++r) {
    if (!specs[r].edited) continue;
    for (const LogitEdit& e : specs[r].edits) {
      if (e.id < 0 || static_cast<size_t>(e.id) >= listable)
        throw std::invalid_argument("CudaModel: a logit edit of id " + std::to_string(e.id) +
                                    " past the listable ids");
      *out++ = RowEdit{r, e.id, e.ops, e.rep, e.sub, e.add};
    }
  }
  return static_cast<int>(n);
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
