#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>

namespace xq {
namespace {

// Eight independent partial sums, so the compiler can vectorize without reassociating.
float dot(const float* a, const float* b, int n) {
  float part[8] = {};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) part[l] += a[i + l] * b[i + l];
  }
  float s = 0.0f;
  for (; i < n; ++i) s += a[i] * b[i];
  for (float p : part) s += p;
  return s;
}

}  // namespace

void attn_scores(const float* q, const float* k, size_t k_stride, int rows, int dim, float scale,
                 float softcap, float* scores) {
  for (int j = 0; j < rows; ++j) {
    float s = dot(q, k + static_cast<size_t>(j) * k_stride, dim) * scale;
    if (softcap > 0.0f) s = softcap * std::tanh(s / softcap);
    scores[j] = s;
  }
}

void OnlineSoftmax::add(const float* scores, const float* v, size_t v_stride, int rows) {
  if (rows <= 0) return;
  const float block_max = *std::max_element(scores, scores + rows);
  if (block_max > max_) {
    // Rescale what was accumulated under the old maximum.
    const float r = std::exp(max_ - block_max);
    for (float& a : acc_) a *= r;
    sum_ *= r;
    max_ = block_max;
  }
  const int dim = static_cast<int>(acc_.size());
  for (int j = 0; j < rows; ++j) {
    const float p = std::exp(scores[j] - max_);
    sum_ += p;
    const float* vr = v + static_cast<size_t>(j) * v_stride;
    for (int i = 0; i < dim; ++i) acc_[i] += p * vr[i];
  }
}

void OnlineSoftmax::finish(float* out) const {
  const float inv = sum_ > 0.0 ? static_cast<float>(1.0 / sum_) : 0.0f;
  for (size_t i = 0; i < acc_.size(); ++i) out[i] = acc_[i] * inv;
}

void attend_query(const float* q, const float* k, size_t k_stride, const float* v, size_t v_stride,
                  int rows, int dim, float scale, float softcap, float* out, float* scratch) {
  attn_scores(q, k, k_stride, rows, dim, scale, softcap, scratch);
  OnlineSoftmax acc(dim);
  acc.add(scratch, v, v_stride, rows);
  acc.finish(out);
}

}  // namespace xq
