// XQuant-CL's plan on the GPU, run on the host: a step's layout (engine/cuda/step_layout.h), the
// accumulator rows of its groups (place_cl_groups) and the chains (fill_cl_layout), read as
// ClAccumulator::layer_group reads them, with host stand-ins for the cache pages and the kernels
// (a lossy rounding for the quantizer). Every rebuilt row of every layer, group and step must
// equal the per-token chain A_l = A_prev + Q(S_l - A_prev), whether a group keeps its
// accumulator rows across layers or rebuilds them from the chain. Needs no GPU (the file is in
// CUDA builds only, as step_layout.cpp is).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "engine/cuda/gpu_cache_layout.h"
#include "engine/cuda/step_layout.h"
#include "tests/unit/cuda_cl_plan_host.h"

namespace xq::cuda {
namespace {

using cl_plan_host::config;
using cl_plan_host::kHidden;
using cl_plan_host::quant;
using cl_plan_host::source;

// The GPU cache and accumulator on the host: per layer, rows by (page, slot).
struct HostCl {
  ClShape shape;
  int acc_rows = 0;
  std::vector<std::vector<float>> store;
  std::vector<float> acc;
};

float* row(std::vector<float>& v, size_t r) { return v.data() + r * kHidden; }

// ClAccumulator::add_layer: acc (+)= layer m's cached row of every workspace row with one.
void add_layer(HostCl& c, int m, const StepLayout::Group& g, const int* d, float* acc,
               bool accumulate) {
  for (int r = 0; r < g.ws_rows; ++r) {
    const int page = d[g.cache_page + r];
    if (page < 0) continue;
    const float* s = row(c.store[m], static_cast<size_t>(page) * kPageRows + d[g.src_slot + r]);
    for (int j = 0; j < kHidden; ++j)
      acc[r * kHidden + j] = (accumulate ? acc[r * kHidden + j] : 0.0f) + s[j];
  }
}

// ClAccumulator::layer_group on the host; returns the rebuilt rows [ws_rows, hidden].
std::vector<float> layer_group(HostCl& c, int l, int gi, const StepLayout& L,
                               const std::vector<ClGroupRows>& places,
                               const std::vector<float>& src) {
  const int* d = L.ints.data();
  const StepLayout::Group& g = L.groups[gi];
  const ClShape& s = c.shape;
  float* acc =
      c.acc.data() + (static_cast<size_t>(s.chain[l]) * c.acc_rows + places[gi].offset) * kHidden;
  const int p = s.prev[l];
  if (!places[gi].resident && p >= 0) {
    std::vector<int> chain;
    for (int m = p; m >= 0; m = s.prev[m]) chain.push_back(m);
    for (size_t i = chain.size(); i-- > 0;) add_layer(c, chain[i], g, d, acc, i + 1 < chain.size());
  }
  for (int i = 0; i < g.rows; ++i) {
    const size_t ws = static_cast<size_t>(d[g.new_page + i]) * kPageRows + d[g.new_slot + i];
    const size_t cache = static_cast<size_t>(d[L.new_page + g.row_begin + i]) * kPageRows +
                         d[L.new_slot + g.row_begin + i];
    for (int j = 0; j < kHidden; ++j) {
      const float x = src[(static_cast<size_t>(g.row_begin) + i) * kHidden + j];
      row(c.store[l], cache)[j] = quant(p >= 0 ? x - acc[ws * kHidden + j] : x);
    }
  }
  add_layer(c, l, g, d, acc, p >= 0);
  std::vector<float> out(static_cast<size_t>(g.ws_rows) * kHidden, 0.0f);
  for (int r = 0; r < g.ws_rows; ++r)
    if (d[g.ws_pos + r] >= 0)
      std::copy(acc + r * kHidden, acc + (r + 1) * kHidden, &out[r * kHidden]);
  return out;
}

struct Seq {
  std::vector<int> pages;
  int tokens = 0;
};

// Runs steps of (sequence, new tokens) on the host plan and checks every rebuilt row.
void run_steps(const ModelConfig& cfg, const CacheOptions& opts, int ws_rows, int acc_rows,
               const std::vector<std::vector<std::pair<int, int>>>& steps) {
  GpuCacheLayout layout = gpu_cache_layout(cfg, opts);
  HostCl c;
  c.shape = layout.cl;
  const int pages = 64;
  c.store.assign(cfg.num_layers, std::vector<float>(pages * kPageRows * kHidden, NAN));
  std::vector<int> free(pages);
  std::iota(free.begin(), free.end(), 0);
  std::shuffle(free.begin(), free.end(), std::mt19937(5));
  std::map<int, Seq> seqs;
  // The reference: each token's A_l down its chain, as the CPU's running sum makes it.
  auto reference = [&](int seq, int pos, int l) {
    std::vector<std::vector<float>> a(cfg.num_layers, std::vector<float>(kHidden));
    for (int m = 0; m <= l; ++m) {
      const int p = c.shape.prev[m];
      for (int j = 0; j < kHidden; ++j) {
        const float base = p >= 0 ? a[p][j] : 0.0f;
        a[m][j] =
            p >= 0 ? base + quant(source(seq, pos, m, j) - base) : quant(source(seq, pos, m, j));
      }
    }
    return a[l];
  };
  int groups_seen = 0, rebuilt_groups = 0;
  for (const auto& step : steps) {
    std::vector<StepSeq> in;
    std::vector<std::vector<int>> toks;
    for (const auto& [id, n] : step) {
      Seq& s = seqs[id];
      while (static_cast<int>(s.pages.size()) * kPageRows < s.tokens + n) {
        s.pages.push_back(free.back());
        free.pop_back();
      }
      toks.emplace_back(n, 1);
    }
    for (size_t i = 0; i < step.size(); ++i) {
      Seq& s = seqs[step[i].first];
      in.push_back({&s.pages, toks[i].data(), s.tokens, step[i].second});
    }
    const StepLayout L = build_step_layout(in, ws_rows, 2);
    std::vector<int> group_rows;
    for (const StepLayout::Group& g : L.groups) group_rows.push_back(g.ws_rows);
    c.acc_rows = std::max(acc_rows, L.max_ws_rows);
    c.acc.assign(static_cast<size_t>(c.shape.chains) * c.acc_rows * kHidden, NAN);
    const std::vector<ClGroupRows> places = place_cl_groups(group_rows, c.acc_rows);
    groups_seen += static_cast<int>(L.groups.size());
    for (const ClGroupRows& p : places) rebuilt_groups += p.resident ? 0 : 1;
    for (int l = 0; l < cfg.num_layers; ++l) {
      std::vector<float> src;
      for (const auto& [id, n] : step)
        for (int k = 0; k < n; ++k)
          for (int j = 0; j < kHidden; ++j) src.push_back(source(id, seqs[id].tokens + k, l, j));
      for (size_t gi = 0; gi < L.groups.size(); ++gi) {
        const StepLayout::Group& g = L.groups[gi];
        const std::vector<float> got = layer_group(c, l, static_cast<int>(gi), L, places, src);
        // Workspace rows: each sequence of the group, positions [0, tokens + n), page-aligned.
        int ws = 0;
        for (int i = g.seq_begin; i < g.seq_end; ++i) {
          const int id = step[i].first, len = seqs[id].tokens + step[i].second;
          for (int pos = 0; pos < len; ++pos) {
            const std::vector<float> want = reference(id, pos, l);
            for (int j = 0; j < kHidden; ++j)
              ASSERT_EQ(got[(static_cast<size_t>(ws) + pos) * kHidden + j], want[j])
                  << "layer " << l << " seq " << id << " pos " << pos << " col " << j;
          }
          ws += (len + kPageRows - 1) / kPageRows * kPageRows;
        }
      }
    }
    for (const auto& [id, n] : step) seqs[id].tokens += n;
  }
  EXPECT_GT(groups_seen, static_cast<int>(steps.size()));  // several groups a step
  if (acc_rows < 2 * ws_rows) {
    EXPECT_GT(rebuilt_groups, 0);
  }
}

// Prefill of three sequences, decodes, then a chunked prompt next to decodes.
const std::vector<std::vector<std::pair<int, int>>> kSteps = {{{0, 5}, {1, 19}, {2, 33}},
                                                              {{0, 1}, {1, 1}, {2, 1}},
                                                              {{0, 1}, {1, 1}, {2, 1}},
                                                              {{3, 16}, {0, 1}},
                                                              {{3, 16}, {2, 1}, {1, 1}}};

TEST(CudaClPlan, RebuiltRowsFollowEachTokensChain) {
  for (bool sliding : {false, true}) {
    for (HighPrecisionLayers hp : {HighPrecisionLayers{0, 4}, HighPrecisionLayers{2, 8}}) {
      CacheOptions o;
      o.format = "xquant-cl";
      o.bits = 2;
      o.group_size = 4;
      o.latent = "off";
      o.high_precision = hp;
      // Accumulator rows for every group, for the first ones only, for none.
      for (int acc : {1024, 64, 16}) {
        SCOPED_TRACE(::testing::Message() << "sliding " << sliding << " hp " << hp.layers
                                          << " accumulator rows " << acc);
        run_steps(config(sliding), o, 32, acc, kSteps);
      }
    }
  }
}

}  // namespace
}  // namespace xq::cuda
