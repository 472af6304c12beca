#include "scheduler/block_manager.h"

#include <cmath>
#include <stdexcept>

namespace xq {

int64_t BlockManager::blocks_for_budget(double budget_bytes, double bytes_per_token,
                                        int block_size) {
  if (bytes_per_token <= 0 || block_size <= 0) throw std::invalid_argument("bad block geometry");
  return static_cast<int64_t>(std::floor(budget_bytes / (bytes_per_token * block_size)));
}

void BlockManager::grow(int64_t& held, int64_t tokens) {
  const int64_t need = blocks_for_tokens(tokens) - held;
  if (need <= 0) return;
  if (need > free_) throw std::logic_error("BlockManager::grow without free blocks");
  free_ -= need;
  held += need;
}

void BlockManager::release(int64_t& held) {
  free_ += held;
  held = 0;
}

}  // namespace xq
