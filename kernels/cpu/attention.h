// Attention math shared by the cache formats: scores of one query against rows of K, and a
// running (online) softmax-weighted sum of value rows that can be fed block by block.
#pragma once

#include <cstddef>
#include <vector>

namespace xq {

// scores[j] = softcap(scale * q · K[j]) for rows j < rows of K (rows `k_stride` floats apart).
void attn_scores(const float* q, const float* k, size_t k_stride, int rows, int dim, float scale,
                 float softcap, float* scores);

// softmax(scores) · V accumulated over blocks of rows, so a format can rematerialize or
// dequantize K/V a block at a time. The "values" may be any rows (e.g. cached X, when Wv is
// applied after the sum).
class OnlineSoftmax {
 public:
  explicit OnlineSoftmax(int dim) : acc_(dim, 0.0f) {}
  // Folds in `rows` rows: scores[j] pairs with the value row v + j * v_stride.
  void add(const float* scores, const float* v, size_t v_stride, int rows);
  // out[dim] = the normalized weighted sum (zeros when nothing was added).
  void finish(float* out) const;

 private:
  std::vector<float> acc_;
  float max_ = -1e30f;
  double sum_ = 0.0;
};

// One query over rows [0, rows) of K and V: out = softmax(softcap(scale q K^T)) V.
// `scratch` holds at least `rows` floats.
void attend_query(const float* q, const float* k, size_t k_stride, const float* v, size_t v_stride,
                  int rows, int dim, float scale, float softcap, float* out, float* scratch);

}  // namespace xq
