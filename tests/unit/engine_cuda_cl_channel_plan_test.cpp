// XQuant-CL's per-channel (-ch) plan on the GPU, run on the host: a step's layout, its per-channel
// indices (build_channel_step) and staged blocks (build_cl_block_step), the accumulator rows of
// its groups and the chains, read in the order cl_channel_accumulator.cpp reads them, with host
// stand-ins for the kernels (a lossy rounding for the quantizer, window slots as arrays). Every
// rebuilt row of every layer, group and step must be what the CPU's CLChannelSequence reads: a
// position in a block filled before the step, its chain A_l = A_prev + Q(S_l - A_prev); a
// position still in the window before the step, S_l itself (without the fp16 window: its chain
// of deltas quantized as a partial block, the CPU's window_quantized, with the full block's
// A_prev below where the step fills it). Needs no GPU (CUDA builds only, as step_layout.cpp is).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "engine/cuda/channel_step.h"
#include "engine/cuda/gpu_cache_layout.h"
#include "engine/cuda/step_layout.h"
#include "tests/unit/cuda_cl_plan_host.h"

namespace xq::cuda {
namespace {

using cl_plan_host::config;
using cl_plan_host::kHidden;
using cl_plan_host::quant;
using cl_plan_host::source;

constexpr int kSlots = 8;

// A stand-in for quantizing one channel of a partial block: lossy, exact in float, and
// dependent on every row of the block (through its minimum), so a block of other rows shows.
void partial_quant(std::vector<float>& column) {
  const float lo = *std::min_element(column.begin(), column.end());
  for (float& v : column) v = lo + quant(v - lo);
}

// rows [n, kHidden] := each channel quantized over the n rows as one partial block.
void partial_quant_rows(float* rows, int n) {
  std::vector<float> col(n);
  for (int c = 0; c < kHidden; ++c) {
    for (int t = 0; t < n; ++t) col[t] = rows[t * kHidden + c];
    partial_quant(col);
    for (int t = 0; t < n; ++t) rows[t * kHidden + c] = col[t];
  }
}

// The GPU cache on the host: per layer, rows by (page, slot); per layer and window slot, G rows.
struct HostCl {
  ClShape shape;
  int group = 0, acc_rows = 0;
  std::vector<std::vector<float>> store, window;
  std::vector<float> acc;
  bool fp16_window = true;
  std::vector<float> part;  // window_partial's rows [ws_rows, hidden]
  float* win(int l, int slot, int pos) {
    return &window[l][(static_cast<size_t>(slot) * group + pos % group) * kHidden];
  }
};

// The step's arrays as the kernels see them.
struct Step {
  const StepLayout& L;
  const ChannelStep& c;
  const ClBlockStep& b;
  const int* d() const { return L.ints.data(); }
  // Sequence i's (q_row, n, start, table).
  const int* seq(int i) const { return d() + L.seqs + 4 * i; }
};

// add_step_blocks / dequantize_rows_add: acc (+)= layer m's rows of every position in a block
// filled by the end of the step.
void add_layer(HostCl& h, const Step& s, int m, int gi, float* acc, bool accumulate) {
  const StepLayout::Group& g = s.L.groups[gi];
  const int* d = s.d();
  for (int r = 0; r < g.ws_rows; ++r) {
    const int i = d[s.c.ws_seq[gi] + r], p = d[g.ws_pos + r];
    if (i < 0 || p < 0) continue;
    const int end = s.seq(i)[2] + s.seq(i)[1];
    if (p >= end - end % h.group) continue;
    const float* v =
        &h.store[m][(static_cast<size_t>(d[g.cache_page + r]) * kPageRows + d[g.src_slot + r]) *
                    kHidden];
    for (int j = 0; j < kHidden; ++j)
      acc[r * kHidden + j] = (accumulate ? acc[r * kHidden + j] : 0.0f) + v[j];
  }
}

// Whether group gi has window positions (a sequence starting inside a block).
bool has_window(const HostCl& h, const Step& s, int gi) {
  const StepLayout::Group& g = s.L.groups[gi];
  bool any = false;
  for (int i = g.seq_begin; i < g.seq_end; ++i) any |= s.seq(i)[2] % h.group != 0;
  return any;
}

// ClAccumulator::window_partial: h.part = the window positions' A_m, their delta against acc
// (subtract) quantized as a partial block (cl_window_deltas, quantize_window_partial,
// cl_window_add).
void window_partial(HostCl& h, const Step& s, int m, int gi, const float* acc, bool subtract) {
  const StepLayout::Group& g = s.L.groups[gi];
  const int* d = s.d();
  h.part.assign(static_cast<size_t>(g.ws_rows) * kHidden, NAN);
  for (int i = g.seq_begin; i < g.seq_end; ++i) {
    const int start = s.seq(i)[2], lo = start - start % h.group;
    if (lo == start) continue;
    const int ws0 = d[g.seq_x_row + i - g.seq_begin];
    float* rows = &h.part[static_cast<size_t>(ws0 + lo) * kHidden];
    for (int pos = lo; pos < start; ++pos)
      for (int c = 0; c < kHidden; ++c) {
        const size_t r = static_cast<size_t>(ws0 + pos) * kHidden + c;
        h.part[r] = h.win(m, d[s.c.slots + i], pos)[c] - (subtract ? acc[r] : 0.0f);
      }
    partial_quant_rows(rows, start - lo);
    if (!subtract) continue;
    for (int pos = lo; pos < start; ++pos)
      for (int c = 0; c < kHidden; ++c) {
        const size_t r = static_cast<size_t>(ws0 + pos) * kHidden + c;
        h.part[r] += acc[r];
      }
  }
}

// cl_window_partial_rows: the window positions' rebuilt rows from h.part (out, when given), and
// h.part into acc for the sequences whose block the step does not fill.
void window_partial_rows(HostCl& h, const Step& s, int gi, float* acc, std::vector<float>* out) {
  const StepLayout::Group& g = s.L.groups[gi];
  const int* d = s.d();
  for (int i = g.seq_begin; i < g.seq_end; ++i) {
    const int start = s.seq(i)[2], lo = start - start % h.group, end = start + s.seq(i)[1];
    const int ws0 = d[g.seq_x_row + i - g.seq_begin];
    for (int pos = lo; pos < start; ++pos) {
      const float* v = &h.part[static_cast<size_t>(ws0 + pos) * kHidden];
      if (out != nullptr) std::copy_n(v, kHidden, &(*out)[(ws0 + pos) * kHidden]);
      if (end < lo + h.group) std::copy_n(v, kHidden, acc + (ws0 + pos) * kHidden);
    }
  }
}

// ClAccumulator::layer_group_channel on the host; returns the rebuilt rows [ws_rows, hidden].
std::vector<float> layer_group(HostCl& h, const Step& s, int l, int gi,
                               const std::vector<ClGroupRows>& places,
                               const std::vector<float>& src) {
  const int* d = s.d();
  const StepLayout::Group& g = s.L.groups[gi];
  const int G = h.group, p = h.shape.prev[l];
  float* acc = h.acc.data() +
               (static_cast<size_t>(h.shape.chain[l]) * h.acc_rows + places[gi].offset) * kHidden;
  const bool partial = !h.fp16_window && has_window(h, s, gi);
  if (!places[gi].resident && p >= 0) {
    std::vector<int> chain;
    for (int m = p; m >= 0; m = h.shape.prev[m]) chain.push_back(m);
    for (size_t k = chain.size(); k-- > 0;) {
      if (partial) window_partial(h, s, chain[k], gi, acc, k + 1 < chain.size());
      add_layer(h, s, chain[k], gi, acc, k + 1 < chain.size());
      if (partial) window_partial_rows(h, s, gi, acc, nullptr);
    }
  }
  // Staged deltas of the group's filled blocks, stored through their stand-in sequences.
  for (int j = s.b.group_first[gi]; j < s.b.group_first[gi + 1]; ++j) {
    const int i = d[s.c.blocks + 2 * j], b = d[s.c.blocks + 2 * j + 1];
    const int* stand_in = d + s.b.seqs + 4 * j;
    EXPECT_EQ(d[s.b.blocks + 2 * j], j);
    EXPECT_EQ(d[s.b.blocks + 2 * j + 1], b);
    EXPECT_EQ(stand_in[0], j * G);
    EXPECT_EQ(stand_in[2], b * G);
    EXPECT_EQ(d[s.b.slots + j], d[s.c.slots + i]);
    const int q_row = s.seq(i)[0], start = s.seq(i)[2];
    const int ws0 = d[g.seq_x_row + i - g.seq_begin];
    for (int t = 0; t < G; ++t) {
      const int pos = b * G + t, staged = j * G + t;
      const int page = d[s.L.tables + stand_in[3] + pos / kPageRows];
      EXPECT_EQ(d[s.b.row_page + staged], page);
      EXPECT_EQ(d[s.b.row_slot + staged], pos % kPageRows);
      float* out = &h.store[l][(static_cast<size_t>(page) * kPageRows + pos % kPageRows) * kHidden];
      for (int c = 0; c < kHidden; ++c) {
        const float v = pos < start ? h.win(l, d[s.c.slots + i], pos)[c]
                                    : src[static_cast<size_t>(q_row + pos - start) * kHidden + c];
        out[c] = quant(p >= 0 ? v - acc[(ws0 + pos) * kHidden + c] : v);
      }
    }
  }
  if (partial) window_partial(h, s, l, gi, acc, p >= 0);
  add_layer(h, s, l, gi, acc, p >= 0);
  std::vector<float> out(static_cast<size_t>(g.ws_rows) * kHidden, 0.0f);
  for (int r = 0; r < g.ws_rows; ++r)
    if (d[g.ws_pos + r] >= 0)
      std::copy(acc + r * kHidden, acc + (r + 1) * kHidden, &out[r * kHidden]);
  // The window's rows over them (or their partial chain's), then the step's rows past its last
  // filled block into it.
  if (partial) window_partial_rows(h, s, gi, acc, &out);
  for (int i = g.seq_begin; i < g.seq_end && h.fp16_window; ++i) {
    const int start = s.seq(i)[2], ws0 = d[g.seq_x_row + i - g.seq_begin];
    for (int pos = start - start % G; pos < start; ++pos)
      std::copy_n(h.win(l, d[s.c.slots + i], pos), kHidden, &out[(ws0 + pos) * kHidden]);
  }
  for (int r = g.row_begin; r < g.row_begin + g.rows; ++r) {
    const int i = d[s.L.row_seq + r];
    const int pos = s.seq(i)[2] + r - s.seq(i)[0], end = s.seq(i)[2] + s.seq(i)[1];
    if (pos >= end - end % G)
      std::copy_n(&src[static_cast<size_t>(r) * kHidden], kHidden, h.win(l, d[s.c.slots + i], pos));
  }
  return out;
}

struct Seq {
  std::vector<int> pages;
  int tokens = 0, slot = -1;
};

void run_steps(const ModelConfig& cfg, const CacheOptions& opts, int ws_rows, int acc_rows,
               const std::vector<std::vector<std::pair<int, int>>>& steps) {
  const GpuCacheLayout layout = gpu_cache_layout(cfg, opts);
  ASSERT_TRUE(layout.cl.per_channel);
  HostCl h;
  h.shape = layout.cl;
  h.group = layout.group;
  h.fp16_window = opts.fp16_window;
  const int pages = 128;
  h.store.assign(cfg.num_layers, std::vector<float>(pages * kPageRows * kHidden, NAN));
  h.window.assign(cfg.num_layers, std::vector<float>(kSlots * h.group * kHidden, NAN));
  std::vector<int> free(pages), free_slots(kSlots);
  std::iota(free.begin(), free.end(), 0);
  std::iota(free_slots.begin(), free_slots.end(), 0);
  std::shuffle(free.begin(), free.end(), std::mt19937(5));
  std::shuffle(free_slots.begin(), free_slots.end(), std::mt19937(6));
  std::map<int, Seq> seqs;
  // A filled position's A_l down its chain, as the CPU's flushes make it.
  auto chain_value = [&](int seq, int pos, int l) {
    std::vector<std::vector<float>> a(cfg.num_layers, std::vector<float>(kHidden));
    for (int m = 0; m <= l; ++m) {
      const int p = h.shape.prev[m];
      for (int j = 0; j < kHidden; ++j) {
        const float base = p >= 0 ? a[p][j] : 0.0f;
        a[m][j] = base + quant(source(seq, pos, m, j) - base);
      }
    }
    return a[l];
  };
  // Without the fp16 window, a window position's A_l as window_quantized reads it: rows [lo,
  // start) of a sequence, each layer down l's chain a delta quantized over those rows as one
  // partial block, against the full block's chain where the step fills it (`filled`).
  auto partial_value = [&](int seq, int lo, int start, int l, bool filled) {
    const int n = start - lo;
    std::vector<int> chain;
    for (int m = l; m >= 0; m = h.shape.prev[m]) chain.push_back(m);
    std::vector<float> a(static_cast<size_t>(n) * kHidden, 0.0f), delta(a.size());
    for (size_t k = chain.size(); k-- > 0;) {
      const int m = chain[k];
      if (filled && m != l) {
        for (int t = 0; t < n; ++t) {
          const std::vector<float> full = chain_value(seq, lo + t, m);
          std::copy(full.begin(), full.end(), &a[t * kHidden]);
        }
        continue;
      }
      for (int t = 0; t < n; ++t)
        for (int j = 0; j < kHidden; ++j)
          delta[t * kHidden + j] = source(seq, lo + t, m, j) - a[t * kHidden + j];
      partial_quant_rows(delta.data(), n);
      for (size_t x = 0; x < a.size(); ++x) a[x] = m == chain.back() ? delta[x] : a[x] + delta[x];
    }
    return a;
  };
  int groups_seen = 0, rebuilt_groups = 0, window_rows = 0, block_rows = 0, filled_rows = 0;
  for (const auto& step : steps) {
    std::vector<StepSeq> in;
    std::vector<std::vector<int>> toks;
    std::vector<int> slots;
    for (const auto& [id, n] : step) {
      Seq& s = seqs[id];
      while (static_cast<int>(s.pages.size()) * kPageRows < s.tokens + n) {
        s.pages.push_back(free.back());
        free.pop_back();
      }
      if (s.slot < 0) {
        s.slot = free_slots.back();
        free_slots.pop_back();
      }
      toks.emplace_back(n, 1);
      slots.push_back(s.slot);
    }
    for (size_t i = 0; i < step.size(); ++i) {
      Seq& s = seqs[step[i].first];
      in.push_back({&s.pages, toks[i].data(), s.tokens, step[i].second});
    }
    StepLayout L = build_step_layout(in, ws_rows, 2);
    const ChannelStep c = build_channel_step(L, in, slots, h.group, false);
    const ClBlockStep b = build_cl_block_step(L, c, h.group);
    ASSERT_EQ(b.group_first.size(), L.groups.size() + 1);
    const Step s{L, c, b};
    std::vector<int> group_rows;
    for (const StepLayout::Group& g : L.groups) group_rows.push_back(g.ws_rows);
    h.acc_rows = std::max(acc_rows, L.max_ws_rows);
    h.acc.assign(static_cast<size_t>(h.shape.chains) * h.acc_rows * kHidden, NAN);
    const std::vector<ClGroupRows> places = place_cl_groups(group_rows, h.acc_rows);
    groups_seen += static_cast<int>(L.groups.size());
    for (const ClGroupRows& p : places) rebuilt_groups += p.resident ? 0 : 1;
    for (int l = 0; l < cfg.num_layers; ++l) {
      std::vector<float> src;
      for (const auto& [id, n] : step)
        for (int k = 0; k < n; ++k)
          for (int j = 0; j < kHidden; ++j) src.push_back(source(id, seqs[id].tokens + k, l, j));
      for (size_t gi = 0; gi < L.groups.size(); ++gi) {
        const StepLayout::Group& g = L.groups[gi];
        const std::vector<float> got = layer_group(h, s, l, static_cast<int>(gi), places, src);
        int ws = 0;
        for (int i = g.seq_begin; i < g.seq_end; ++i) {
          const int id = step[i].first, start = seqs[id].tokens, lo = start - start % h.group;
          const bool filled = start + step[i].second >= lo + h.group;
          const std::vector<float> partial = h.fp16_window || lo == start
                                                 ? std::vector<float>{}
                                                 : partial_value(id, lo, start, l, filled);
          // The step's own rows are rebuilt from their full-precision projections instead.
          for (int pos = 0; pos < start; ++pos) {
            const bool in_window = pos >= lo;
            (in_window ? window_rows : block_rows) += 1;
            filled_rows += in_window && filled;
            std::vector<float> want(kHidden);
            for (int j = 0; j < kHidden; ++j) want[j] = source(id, pos, l, j);
            if (!in_window) want = chain_value(id, pos, l);
            if (in_window && !h.fp16_window)
              std::copy_n(&partial[(pos - lo) * kHidden], kHidden, want.begin());
            for (int j = 0; j < kHidden; ++j)
              ASSERT_EQ(got[(static_cast<size_t>(ws) + pos) * kHidden + j], want[j])
                  << "layer " << l << " seq " << id << " pos " << pos << " col " << j
                  << (in_window ? " (window)" : " (block)");
          }
          ws += (start + step[i].second + kPageRows - 1) / kPageRows * kPageRows;
        }
      }
    }
    for (const auto& [id, n] : step) seqs[id].tokens += n;
  }
  EXPECT_GT(groups_seen, static_cast<int>(steps.size()));  // several groups a step
  EXPECT_GT(window_rows, 0);
  EXPECT_GT(block_rows, 0);
  EXPECT_GT(filled_rows, 0);  // window positions of a block the step fills, and not
  EXPECT_GT(window_rows, filled_rows);
  if (acc_rows < 2 * ws_rows) {
    EXPECT_GT(rebuilt_groups, 0);
  }
}

// Prefills that fill blocks or not, decodes that fill one, chunks that start inside a block.
const std::vector<std::vector<std::pair<int, int>>> kSteps = {
    {{0, 5}, {1, 19}, {2, 33}},      {{0, 1}, {1, 1}, {2, 1}},
    {{0, 2}, {1, 1}, {2, 1}},        {{3, 13}, {0, 1}},
    {{3, 16}, {2, 1}, {1, 1}},       {{3, 40}, {0, 1}, {1, 1}},
    {{0, 1}, {1, 1}, {2, 1}, {3, 1}}};

TEST(CudaClChannelPlan, RebuiltRowsAreTheChainOrTheWindow) {
  for (bool sliding : {false, true}) {
    for (HighPrecisionLayers hp : {HighPrecisionLayers{0, 4}, HighPrecisionLayers{2, 16}}) {
      for (int group : {4, 32}) {
        CacheOptions o;
        o.format = "xquant-cl-ch";
        o.bits = 2;
        o.group_size = group;
        o.latent = "off";
        o.high_precision = hp;
        // Accumulator rows for every group, for the first ones only, for none; the window kept
        // in fp16 or read quantized.
        for (int acc : {1024, 64, 32}) {
          for (bool window : {true, false}) {
            o.fp16_window = window;
            SCOPED_TRACE(::testing::Message()
                         << "sliding " << sliding << " hp " << hp.layers << "@" << hp.bits << " G "
                         << group << " accumulator rows " << acc << " fp16 window " << window);
            run_steps(config(sliding), o, 32, acc, kSteps);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace xq::cuda
