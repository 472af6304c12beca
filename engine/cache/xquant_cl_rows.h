// ClRows: one layer's store in XQuant-CL. Rows go in and come out in X space; inside they are
// kept as they are, or (GQA models, the paper's form) on the layer's basis Ukv_l of the row space
// of [Wk; Wv]: the latent delta dX Ukv_l, 2 kv_dim wide instead of hidden. read() lifts the
// latent back with Ukv_l^T, so the chain code (xquant_cl_chain.h) sums in X space either way.
#pragma once

#include <cstddef>
#include <vector>

#include "engine/cache/quantized_rows.h"
#include "engine/cache/x_attention.h"

namespace xq {

template <typename Rows>
class ClRows {
 public:
  // basis: [width, hidden] orthonormal rows, or nullptr to keep rows of width hidden as they are.
  ClRows(int hidden, const std::vector<float>* basis, int bits, int group)
      : hidden_(hidden),
        width_(basis != nullptr ? static_cast<int>(basis->size() / hidden) : hidden),
        basis_(basis),
        rows_(width_, bits, group) {}

  int rows() const { return rows_.rows(); }
  // Appends x [n, hidden] (on the basis when there is one).
  void append(const float* x, int n) {
    if (basis_ == nullptr) return rows_.append(x, n);
    std::vector<float> z(static_cast<size_t>(n) * width_);
    project_rows(x, n, hidden_, basis_->data(), width_, z.data());
    rows_.append(z.data(), n);
  }
  // Rows [begin, end) in X space into out [end - begin, hidden].
  void read(int begin, int end, float* out) const {
    if (basis_ == nullptr) return rows_.read(begin, end, out);
    std::vector<float> z(static_cast<size_t>(end - begin) * width_);
    rows_.read(begin, end, z.data());
    lift_rows(z.data(), end - begin, width_, basis_->data(), hidden_, out);
  }
  void truncate(int n) { rows_.truncate(n); }
  void drop_before(int row) { rows_.drop_before(row); }
  size_t bytes() const { return rows_.bytes(); }

 private:
  int hidden_, width_;
  const std::vector<float>* basis_;
  Rows rows_;
};

}  // namespace xq
