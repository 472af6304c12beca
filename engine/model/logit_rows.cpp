#include "engine/model/model.h"

namespace xq {

std::vector<int> logit_rows(std::span<const SeqInput> batch) {
  std::vector<int> pick;
  int r = 0;
  for (const SeqInput& s : batch) {
    const int n = static_cast<int>(s.tokens.size());
    if (s.all_logits) {
      for (int i = 0; i < n; ++i) pick.push_back(r + i);
    } else if (n > 0) {
      pick.push_back(r + n - 1);
    }
    r += n;
  }
  return pick;
}

}  // namespace xq
