// BlockManager: the cache memory budget as a pool of fixed-size blocks. A block holds
// `block_size` tokens of one sequence across all layers, so its bytes come from the cache
// format's bytes_per_token; a sequence holds ceil(tokens / block_size) blocks.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xq {

class BlockManager {
 public:
  BlockManager(int64_t num_blocks, int block_size) : total_(num_blocks), free_(num_blocks),
                                                     block_size_(block_size) {}

  // Blocks from a byte budget and the format's bytes per token.
  static int64_t blocks_for_budget(double budget_bytes, double bytes_per_token, int block_size);

  int64_t blocks_for_tokens(int64_t tokens) const {
    return (tokens + block_size_ - 1) / block_size_;
  }
  // Can `held` blocks grow to cover `tokens` tokens, keeping `reserve` blocks free?
  bool can_grow(int64_t held, int64_t tokens, int64_t reserve = 0) const {
    return blocks_for_tokens(tokens) - held <= free_ - reserve;
  }
  // Grows `held` to cover `tokens`; call only after can_grow().
  void grow(int64_t& held, int64_t tokens);
  void release(int64_t& held);

  int64_t total() const { return total_; }
  int64_t free() const { return free_; }
  int block_size() const { return block_size_; }
  int64_t max_tokens() const { return total_ * block_size_; }

 private:
  int64_t total_;
  int64_t free_;
  int block_size_;
};

}  // namespace xq
