// BlockManager: the cache memory budget as a pool of fixed-size blocks. A block is the bytes of
// `block_size` tokens across all layers (the cache format's bytes per token), and a sequence
// holds as many blocks as its bytes need. Where a model has sliding-window layers, those hold
// only a sequence's last tokens, so past the window a token costs only its share in the other
// layers and a sequence's blocks grow more slowly.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xq {

// What a token costs: `bytes` in the layers that keep every token, `sliding_bytes` in the
// sliding-window layers, which hold at most `sliding_tokens` tokens of a sequence.
struct TokenCost {
  double bytes = 1.0;
  double sliding_bytes = 0.0;
  int64_t sliding_tokens = 0;
};

class BlockManager {
 public:
  BlockManager(int64_t num_blocks, int block_size, TokenCost cost = {});

  // Blocks from a byte budget: each block holds block_size tokens at their full cost.
  static int64_t blocks_for_budget(double budget_bytes, const TokenCost& cost, int block_size);

  int64_t blocks_for_tokens(int64_t tokens) const;
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
  // The longest sequence the whole pool holds.
  int64_t max_tokens() const;

 private:
  int64_t total_;
  int64_t free_;
  int block_size_;
  double sliding_share_;  // the part of a token's cost in sliding layers, 0..1
  int64_t sliding_tokens_;
};

}  // namespace xq
