// Fp16LeadRows: rows whose first `lead` channels stay fp16 while the others are quantized in a
// row store (TokenQuantRows or ChannelQuantRows). The paper's Appendix B keeps channel 0 of the
// K latent X Uk in fp16: the top singular direction carries the latent's outliers.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <type_traits>
#include <vector>

#include "engine/cache/quantized_rows.h"

namespace xq {

template <typename Rows>
class Fp16LeadRows {
 public:
  // `fp16_tail` goes to ChannelQuantRows (see there); TokenQuantRows takes a window of 0.
  Fp16LeadRows(int width, int bits, int group, int lead, bool fp16_tail = true)
      : width_(width), lead_(lead), rest_(make_rest(width - lead, bits, group, fp16_tail)) {
    if (lead > 0) head_.emplace(lead, 16, group);
  }

  int rows() const { return rest_.rows(); }
  void append(const float* x, int n) {
    if (lead_ == 0) return rest_.append(x, n);
    std::vector<float> head(static_cast<size_t>(n) * lead_),
        rest(static_cast<size_t>(n) * rest_w());
    split(x, n, head.data(), rest.data());
    head_->append(head.data(), n);
    rest_.append(rest.data(), n);
  }
  void read(int begin, int end, float* out) const {
    if (lead_ == 0) return rest_.read(begin, end, out);
    const size_t n = end - begin;
    std::vector<float> head(n * lead_), rest(n * rest_w());
    head_->read(begin, end, head.data());
    rest_.read(begin, end, rest.data());
    for (size_t i = 0; i < n; ++i) {
      std::copy(head.begin() + i * lead_, head.begin() + (i + 1) * lead_, out + i * width_);
      std::copy(rest.begin() + i * rest_w(), rest.begin() + (i + 1) * rest_w(),
                out + i * width_ + lead_);
    }
  }
  void truncate(int n) {
    if (head_) head_->truncate(n);
    rest_.truncate(n);
  }
  // The fp16 channels follow the quantized ones, so both keep the same rows.
  void drop_before(int row) {
    rest_.drop_before(row);
    if (head_) head_->drop_before(rest_.first());
  }
  int first() const { return rest_.first(); }
  size_t bytes() const { return rest_.bytes() + (head_ ? head_->bytes() : 0); }

 private:
  static Rows make_rest(int width, int bits, int group, bool fp16_tail) {
    if constexpr (std::is_same_v<Rows, ChannelQuantRows>) {
      return Rows(width, bits, group, fp16_tail);
    } else {
      return Rows(width, bits, group);
    }
  }
  size_t rest_w() const { return static_cast<size_t>(width_ - lead_); }
  void split(const float* x, int n, float* head, float* rest) const {
    for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
      std::copy(x + i * width_, x + i * width_ + lead_, head + i * lead_);
      std::copy(x + i * width_ + lead_, x + (i + 1) * width_, rest + i * rest_w());
    }
  }

  int width_, lead_;
  std::optional<TokenQuantRows> head_;  // [rows, lead] fp16
  Rows rest_;
};

}  // namespace xq
