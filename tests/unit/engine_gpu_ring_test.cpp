// The sliding-window rings of the GPU cache (engine/cuda/sliding_ring.h), host arithmetic only:
// a ring covers the window and a step's rows wherever the step starts, only the per-token
// formats get one, the two pools' parts of the memory tile it without overlap, and the budget's
// split backs as many scheduler blocks as fit. The scheduler's side of the agreement (what it
// admits fits the pools) is tests/unit/scheduler_cuda_ring_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "engine/cuda/sliding_ring.h"
#include "tests/unit/engine_cache_bench.h"

namespace xq::cuda {
namespace {

using cache_test::make_config;

// Positions [start - window + 1, start + n) of one step: the pages they touch are distinct
// modulo the ring, for every start and every step size up to the ring's.
TEST(SlidingRing, PagesCoverTheWindowAndAStepWhereverItStarts) {
  for (int window : {1, 8, 20, 32, 512}) {
    for (int step : {1, 7, 16, 48, 2048}) {
      const int R = ring_pages_for(window, step);
      for (int start = 0; start < 3 * R * kPageRows; start += 5) {
        for (int n : {1, step / 2 + 1, step}) {
          const int first = std::max(0, start - window + 1), last = start + n - 1;
          std::vector<int> seen(R, -1);
          for (int page = first / kPageRows; page <= last / kPageRows; ++page) {
            ASSERT_EQ(seen[page % R], -1) << window << " " << step << " " << start << " " << n;
            seen[page % R] = page;
          }
        }
      }
      // Not a page more than that: the span can touch R pages.
      EXPECT_EQ(R, (window - 1 + step + kPageRows - 1) / kPageRows + 1);
    }
  }
}

CacheOptions options(const std::string& format, int bits = 4) {
  CacheOptions o;
  o.format = format;
  o.bits = bits;
  o.group_size = 16;
  return o;
}

TEST(SlidingRing, OnlyPerTokenFormatsOfMixedModelsGetOne) {
  const ModelConfig sliding = make_config("sliding");  // layers 0 and 2 slide, window 20
  struct Want {
    CacheOptions opts;
    bool ring;
  };
  CacheOptions latent = options("xquant");
  latent.latent = "on";
  latent.latent_k = "token";
  CacheOptions latent_channel = latent;
  latent_channel.latent_k = "channel";
  CacheOptions x16 = options("xquant-ch", 16);
  for (const Want& w :
       {Want{options("fp16", 16), true}, Want{options("xquant"), true},
        Want{options("xquant", 16), true}, Want{latent, true}, Want{latent_channel, false},
        Want{options("kivi"), false}, Want{options("xquant-ch"), false}, Want{x16, true},
        Want{options("xquant-cl"), false}}) {
    GpuCacheLayout g = gpu_cache_layout(sliding, w.opts);
    add_sliding_ring(g, sliding, 48);
    const std::string what = w.opts.format + " " + g.name;
    EXPECT_EQ(g.ring_pages, w.ring ? ring_pages_for(20, 48) : 0) << what;
    for (int l = 0; l < 3; ++l) EXPECT_EQ(g.ring_layer(l), w.ring && l != 1) << what;
    EXPECT_EQ(g.global_page_bytes() + g.ring_page_bytes(), g.page_bytes_all_layers()) << what;
    EXPECT_EQ(g.ring_page_bytes(), w.ring ? g.page_bytes(0) + g.page_bytes(2) : 0) << what;
    drop_sliding_ring(g);
    EXPECT_EQ(g.ring_pages, 0) << what;
    EXPECT_EQ(g.ring_page_bytes(), 0u) << what;
  }
  // No sliding layer, every layer sliding, no step size: no ring.
  ModelConfig all = sliding;
  all.layer_is_sliding = {true, true, true};
  for (const ModelConfig& cfg : {make_config("gqa"), all}) {
    GpuCacheLayout g = gpu_cache_layout(cfg, options("fp16", 16));
    add_sliding_ring(g, cfg, 48);
    EXPECT_EQ(g.ring_pages, 0);
  }
  GpuCacheLayout g = gpu_cache_layout(sliding, options("fp16", 16));
  add_sliding_ring(g, sliding, 0);
  EXPECT_EQ(g.ring_pages, 0);
}

// Each layer's part of its pool's pages: global layers first (pages of them), then the ring
// layers (ring pages of them), one after the other, filling the memory exactly.
TEST(SlidingRing, PoolsTileTheMemory) {
  ModelConfig cfg = make_config("sliding");
  cfg.num_layers = 5;
  cfg.layer_is_sliding = {true, false, true, true, false};
  CacheOptions o = options("xquant", 2);
  o.high_precision = {2, 8};  // layers of different sizes
  GpuCacheLayout g = gpu_cache_layout(cfg, o);
  add_sliding_ring(g, cfg, 16);
  const int64_t pages = 7, ring = 3;
  std::vector<std::pair<size_t, size_t>> parts;  // [begin, end)
  for (int l = 0; l < 5; ++l) {
    const int64_t n = g.ring_layer(l) ? ring : pages;
    parts.push_back(
        {g.pool_begin(l, pages, ring), g.pool_begin(l, pages, ring) + n * g.page_bytes(l)});
  }
  std::sort(parts.begin(), parts.end());
  size_t at = 0;
  for (const auto& [b, e] : parts) {
    EXPECT_EQ(b, at);
    at = e;
  }
  EXPECT_EQ(at, pages * g.global_page_bytes() + ring * g.ring_page_bytes());
  EXPECT_EQ(g.pool_begin(1, pages, ring), 0u);  // the first global layer
  EXPECT_EQ(g.pool_begin(0, pages, ring), pages * g.global_page_bytes());
  // Without a ring, the one pool as before.
  drop_sliding_ring(g);
  for (int l = 0; l < 5; ++l) EXPECT_EQ(g.pool_begin(l, pages, 0), g.layer_begin(l, pages));
}

TEST(SlidingRing, TheSplitBacksTheMostBlocksThatFit) {
  const size_t page = 4096, ring_page = 5 * 4096;  // Gemma 3: five sliding layers per global
  for (int R : {3, 10, 162}) {
    for (int seqs : {1, 4, 256}) {
      for (double bytes : {1e5, 3e7, 4e9}) {
        const PoolSplit s = split_pool(bytes, page, ring_page, R, seqs);
        const auto cost = [&](const PoolSplit& p) {
          return static_cast<double>(p.pages) * page +
                 static_cast<double>(p.ring_pages) * ring_page;
        };
        EXPECT_LE(cost(s), bytes);
        EXPECT_GT(cost(pages_for_blocks(s.blocks + 1, page, ring_page, R, seqs)), bytes);
        if (s.blocks == 0) continue;
        // A block's pages in both pools at least; the ring pool never more than every
        // sequence's whole ring.
        EXPECT_GE(s.pages, s.blocks);
        EXPECT_EQ(s.ring_pages, std::min<int64_t>(s.blocks, int64_t{seqs} * R));
      }
    }
  }
  // Short of a ring: a page per block in each pool (plus the rounding page).
  const PoolSplit few = pages_for_blocks(2, page, ring_page, 3, 4);
  EXPECT_EQ(few.ring_pages, 2);
  EXPECT_EQ(few.pages, 3);
  // One sequence far past its ring: 1 + 5 global pages per block beyond it.
  const PoolSplit one = pages_for_blocks(100, page, ring_page, 3, 1);
  EXPECT_EQ(one.ring_pages, 3);
  EXPECT_EQ(one.pages, 100 + 5 * 97 + 1 + 1);
}

}  // namespace
}  // namespace xq::cuda
