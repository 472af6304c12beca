// XQuant-CL's reconstruction A_l of cached rows: the sum of the stored base and deltas down l's
// chain (cl_chains), and a running sum that the next layer of the chain extends with one add.
// Shared by the per-token and per-channel sequences; Store is TokenQuantRows or ChannelQuantRows.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace xq {

// out = A_l of rows [begin, end): the dequantized rows of l, prev[l], prev[prev[l]], ... summed.
template <typename Store>
void chain_sum(const std::vector<Store>& stores, const std::vector<int>& prev, int l, int begin,
               int end, int hidden, std::vector<float>& out, std::vector<float>& tmp) {
  const size_t n = static_cast<size_t>(end - begin) * hidden;
  out.assign(n, 0.0f);
  tmp.resize(n);
  for (int m = l; m >= 0; m = prev[m]) {
    stores[m].read(begin, end, tmp.data());
    for (size_t i = 0; i < n; ++i) out[i] += tmp[i];
  }
}

// A_layer of rows [from, to), kept at their row index in `rows` (sized by the caller, at least
// to * hidden), while the model walks one chain's layers in order.
struct RunningSum {
  std::vector<float> rows;
  int layer = -1, from = 0, to = 0;
};

// Makes r hold A_l of rows [from, to): one add of l's rows onto A_prev[l] when r holds that
// for the same rows, else the whole sum down the chain.
template <typename Store>
void advance_running_sum(const std::vector<Store>& stores, const std::vector<int>& prev, int l,
                         int from, int to, int hidden, RunningSum& r, std::vector<float>& tmp,
                         std::vector<float>& tmp2) {
  const size_t off = static_cast<size_t>(from) * hidden;
  if (prev[l] >= 0 && r.layer == prev[l] && r.from == from && r.to == to) {
    tmp.resize(static_cast<size_t>(to - from) * hidden);
    stores[l].read(from, to, tmp.data());
    for (size_t i = 0; i < tmp.size(); ++i) r.rows[off + i] += tmp[i];
  } else {
    chain_sum(stores, prev, l, from, to, hidden, tmp2, tmp);
    std::copy(tmp2.begin(), tmp2.end(), r.rows.begin() + off);
  }
  r.layer = l, r.from = from, r.to = to;
}

}  // namespace xq
