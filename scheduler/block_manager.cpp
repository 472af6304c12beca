#include "scheduler/block_manager.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace xq {

namespace {
double full_cost(const TokenCost& c) { return c.bytes + c.sliding_bytes; }
}  // namespace

BlockManager::BlockManager(int64_t num_blocks, int block_size, TokenCost cost)
    : total_(num_blocks),
      free_(num_blocks),
      block_size_(block_size),
      sliding_share_(full_cost(cost) > 0 ? cost.sliding_bytes / full_cost(cost) : 0.0),
      sliding_tokens_(cost.sliding_tokens) {
  if (block_size <= 0) throw std::invalid_argument("bad block geometry");
  if (sliding_tokens_ <= 0) sliding_share_ = 0.0;
}

int64_t BlockManager::blocks_for_budget(double budget_bytes, const TokenCost& cost,
                                        int block_size) {
  if (full_cost(cost) <= 0 || block_size <= 0) throw std::invalid_argument("bad block geometry");
  return static_cast<int64_t>(std::floor(budget_bytes / (full_cost(cost) * block_size)));
}

int64_t BlockManager::blocks_for_tokens(int64_t tokens) const {
  if (sliding_share_ == 0.0) return (tokens + block_size_ - 1) / block_size_;
  // Token-equivalents at full cost; the tolerance keeps float rounding from adding a block.
  const double units = static_cast<double>(tokens) * (1.0 - sliding_share_) +
                       static_cast<double>(std::min(tokens, sliding_tokens_)) * sliding_share_;
  return static_cast<int64_t>(std::ceil(units / block_size_ - 1e-9));
}

int64_t BlockManager::max_tokens() const {
  const int64_t units = total_ * block_size_;
  if (sliding_share_ == 0.0 || units <= sliding_tokens_) return units;
  if (sliding_share_ >= 1.0) return std::numeric_limits<int32_t>::max();  // only windows
  return sliding_tokens_ +
         static_cast<int64_t>(std::floor(
             static_cast<double>(units - sliding_tokens_) / (1.0 - sliding_share_) + 1e-9));
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
