// The GPU cache's sliding-window rings against the scheduler's accounting (no GPU needed: the
// format's bytes and the pool split are host arithmetic). The format reports its sliding layers
// at a ring's tokens; whatever the BlockManager admits from the blocks allocate() backs, grown
// chunk by chunk and preempted at random, fits the global and the ring pools; at Gemma 3 270M's
// shape the rings cut a 32K sequence's cache to a quarter; formats without a ring claim nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "engine/cuda/gpu_cache.h"
#include "engine/cuda/sliding_ring.h"
#include "kernels/gpu_probe.h"
#include "scheduler/block_manager.h"

namespace xq::cuda {
namespace {

// Gemma 3 270M's cache shape: 18 layers, every sixth global, one KV head of 256, window 512.
ModelConfig gemma_shape(int layers = 18, int window = 512) {
  ModelConfig c;
  c.arch = Arch::Gemma3;
  c.vocab_size = 256;
  c.hidden_size = 640;
  c.intermediate_size = 2048;
  c.num_layers = layers;
  c.num_heads = 4;
  c.num_kv_heads = 1;
  c.head_dim = 256;
  c.sliding_window = window;
  c.layer_is_sliding.resize(layers);
  for (int l = 0; l < layers; ++l) c.layer_is_sliding[l] = (l + 1) % 6 != 0;
  return c;
}

CacheOptions options(const std::string& format, int bits) {
  CacheOptions o;
  o.format = format;
  o.bits = bits;
  o.group_size = 32;
  return o;
}

TokenCost token_cost(const CacheFormat& f) {
  return {f.bytes_per_token(), f.sliding_bytes_per_token(), f.sliding_tokens()};
}

TEST(GpuRingBudget, FormatsReportTheRingsTokens) {
  const ModelConfig cfg = gemma_shape();
  for (const CacheOptions& o : {options("fp16", 16), options("xquant", 4), options("xquant", 2)}) {
    const GpuCacheFormat f(cfg, o, 2048);
    const GpuCacheLayout& g = f.layout();
    ASSERT_GT(g.ring_pages, 0) << f.name();
    EXPECT_EQ(g.ring_pages, ring_pages_for(512, 2048));
    EXPECT_EQ(f.sliding_tokens(), g.ring_pages * kPageRows) << f.name();
    EXPECT_DOUBLE_EQ(f.bytes_per_token() * kPageRows, static_cast<double>(g.global_page_bytes()));
    EXPECT_DOUBLE_EQ(f.sliding_bytes_per_token() * kPageRows,
                     static_cast<double>(g.ring_page_bytes()));
    // At 32K tokens the 15 sliding layers hold 2576 of them: under a quarter of every row.
    const double all = (f.bytes_per_token() + f.sliding_bytes_per_token()) * 32768;
    EXPECT_LT(f.sequence_bytes(32768), 0.24 * all) << f.name();
  }
  // Without a step size, and for the formats that keep every row: no discount.
  struct NoRing {
    CacheOptions opts;
    int max_step;
  };
  for (const NoRing& c :
       {NoRing{options("fp16", 16), 0}, NoRing{options("kivi", 4), 2048},
        NoRing{options("xquant-ch", 4), 2048}, NoRing{options("xquant-cl", 4), 2048}}) {
    const GpuCacheFormat f(cfg, c.opts, c.max_step);
    EXPECT_EQ(f.layout().ring_pages, 0) << f.name();
    EXPECT_EQ(f.sliding_tokens(), 0) << f.name();
    EXPECT_EQ(f.sliding_bytes_per_token(), 0.0) << f.name();
  }
}

// Pages a sequence of `tokens` tokens holds in each pool (GpuSequence::reserve).
int64_t global_pages(int64_t tokens) { return (tokens + kPageRows - 1) / kPageRows; }
int64_t ring_pages(int64_t tokens, int R) { return std::min<int64_t>(global_pages(tokens), R); }

struct Demand {
  int64_t pages = 0, ring = 0;
};

Demand demand(const std::vector<int64_t>& lens, int R) {
  Demand d;
  for (int64_t n : lens) {
    d.pages += global_pages(n);
    d.ring += ring_pages(n, R);
  }
  return d;
}

// Sequences of random lengths grow by chunks while the BlockManager lets them, a random one is
// preempted when it does not; the pools always hold what the admitted ones need.
void expect_admitted_fit(const GpuCacheFormat& f, double bytes, int max_seqs, int max_step,
                         uint32_t seed) {
  const GpuCacheLayout& g = f.layout();
  const PoolSplit s =
      split_pool(bytes, g.global_page_bytes(), g.ring_page_bytes(), g.ring_pages, max_seqs);
  ASSERT_GT(s.blocks, 0);
  BlockManager bm(s.blocks, kPageRows, token_cost(f));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> chunk(1, max_step);
  std::uniform_int_distribution<int64_t> target(1, 4 * bm.max_tokens() / max_seqs + 64);
  std::vector<int64_t> lens(max_seqs, 0), held(max_seqs, 0), goal(max_seqs);
  for (int64_t& t : goal) t = target(rng);
  Demand worst;
  for (int step = 0; step < 4000; ++step) {
    const int i = static_cast<int>(rng() % max_seqs);
    const int64_t next = std::min(goal[i], lens[i] + (lens[i] == 0 ? chunk(rng) : 1));
    if (next > lens[i] && bm.can_grow(held[i], next)) {
      bm.grow(held[i], next);
      lens[i] = next;
    } else {  // finished, or preempted: its blocks back
      bm.release(held[i]);
      lens[i] = 0;
      goal[i] = target(rng);
    }
    const Demand d = demand(lens, g.ring_pages);
    ASSERT_LE(d.pages, s.pages) << "step " << step;
    ASSERT_LE(d.ring, s.ring_pages) << "step " << step;
    worst.pages = std::max(worst.pages, d.pages);
    worst.ring = std::max(worst.ring, d.ring);
  }
  EXPECT_GT(worst.ring, s.ring_pages / 2) << "the run filled the ring pool";
}

TEST(GpuRingBudget, WhatTheSchedulerAdmitsFitsBothPools) {
  const ModelConfig cfg = gemma_shape(6, 32);
  const GpuCacheFormat fp16(cfg, options("fp16", 16), 24);
  const GpuCacheFormat x4(cfg, options("xquant", 4), 24);
  CacheOptions hp = options("xquant", 2);
  hp.high_precision = {2, 8};  // a global layer cheaper than the first sliding ones
  const GpuCacheFormat x2(cfg, hp, 24);
  uint32_t seed = 1;
  for (const GpuCacheFormat* f : {&fp16, &x4, &x2})
    for (int seqs : {1, 3, 8})
      for (double bytes : {2e6, 2e7}) expect_admitted_fit(*f, bytes, seqs, 24, seed++);
}

// The worst cases the split is sized for, exactly: one sequence as long as the blocks allow,
// and every sequence at its whole ring.
TEST(GpuRingBudget, TheWorstCasesFit) {
  const GpuCacheFormat f(gemma_shape(6, 32), options("fp16", 16), 24);
  const GpuCacheLayout& g = f.layout();
  for (int seqs : {1, 4}) {
    const PoolSplit s =
        split_pool(5e6, g.global_page_bytes(), g.ring_page_bytes(), g.ring_pages, seqs);
    BlockManager bm(s.blocks, kPageRows, token_cost(f));
    const int64_t longest = bm.max_tokens();
    EXPECT_LE(bm.blocks_for_tokens(longest), s.blocks);
    EXPECT_LE(global_pages(longest), s.pages);
    // seqs - 1 rings full and the rest on one sequence.
    const int64_t ring_tokens = static_cast<int64_t>(g.ring_pages) * kPageRows;
    std::vector<int64_t> lens(seqs - 1, ring_tokens);
    int64_t used = 0;
    for (int64_t n : lens) used += bm.blocks_for_tokens(n);
    BlockManager rest(s.blocks - used, kPageRows, token_cost(f));
    lens.push_back(rest.max_tokens());
    const Demand d = demand(lens, g.ring_pages);
    EXPECT_LE(d.pages, s.pages) << seqs;
    EXPECT_LE(d.ring, s.ring_pages) << seqs;
  }
}

// allocate() makes the pools split_pool computes and returns the blocks' bytes, which give the
// scheduler those blocks; memory short of every sequence's whole ring drops the rings.
TEST(GpuRingBudget, AllocateMakesTheSplitsPools) {
  if (probe_gpus().empty()) GTEST_SKIP() << "no CUDA GPU on this machine: no pool is allocated";
  const ModelConfig cfg = gemma_shape(6, 32);
  GpuCacheFormat f(cfg, options("fp16", 16), 24);
  const GpuCacheLayout& g = f.layout();
  const PoolSplit s = split_pool(2e7, g.global_page_bytes(), g.ring_page_bytes(), g.ring_pages, 4);
  const double budget = f.allocate(2e7, 4);
  EXPECT_EQ(f.pool().pages(), s.pages);
  EXPECT_EQ(f.pool().ring_pages(), s.ring_pages);
  EXPECT_EQ(BlockManager::blocks_for_budget(budget, token_cost(f), kPageRows), s.blocks);
  auto seq = f.new_sequence();
  auto* gs = dynamic_cast<GpuSequence*>(seq.get());
  ASSERT_NE(gs, nullptr);
  gs->reserve(1000);
  EXPECT_EQ(gs->pages().size(), 63u);
  EXPECT_EQ(static_cast<int>(gs->ring().size()), g.ring_pages);
  EXPECT_EQ(f.pool().free_ring_pages(), s.ring_pages - g.ring_pages);

  GpuCacheFormat small(cfg, options("fp16", 16), 24);
  const int64_t ring_bytes =
      static_cast<int64_t>(small.layout().page_bytes_all_layers()) * 4 * small.layout().ring_pages;
  small.allocate(0.5 * static_cast<double>(ring_bytes), 4);
  EXPECT_EQ(small.layout().ring_pages, 0);
  EXPECT_EQ(small.sliding_tokens(), 0);
  EXPECT_EQ(small.pool().ring_pages(), 0);
}

}  // namespace
}  // namespace xq::cuda
