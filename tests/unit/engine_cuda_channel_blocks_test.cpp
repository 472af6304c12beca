// The per-channel block kernels (kernels/cuda/channel_ops.h) with the step arrays that drive
// them (engine/cuda/channel_step.h), against the CPU's row stores: two sequences appended in
// steps of mixed sizes (decodes, chunks that fill several blocks, chunks that end mid-block) on
// interleaved pages, read back after every step and compared with ChannelQuantRows::read (keys,
// xquant-ch's X, the K latent; fp16 window or the unfilled block quantized) and with
// TokenQuantRows's fp16 ring of G values (KIVI's values). Skips without a CUDA GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/cache/quantized_rows.h"
#include "engine/cuda/channel_step.h"
#include "kernels/cuda/channel_ops.h"
#include "tests/unit/cuda_test_support.h"

namespace xq::cuda {
namespace {

using test::DeviceBuf;
using test::GpuTest;

constexpr int kSeqs = 2;
const std::vector<int> kSlots = {1, 0};  // window slots, not in the sequences' order

// Steps of new tokens per sequence: a long prefill next to a short one, decodes, chunks.
const std::vector<std::vector<int>> kSteps = {{70, 3},  {1, 1},  {1, 40}, {33, 1}, {1, 1},
                                              {130, 2}, {1, 17}, {5, 1},  {1, 1}};

// Both sequences: their pages, handed out in turn so that they interleave, and lengths.
struct Sequences {
  int pages = 0;
  std::vector<std::vector<int>> tables{kSeqs};
  std::vector<int> len = std::vector<int>(kSeqs, 0);
  std::vector<std::vector<int>> toks{kSeqs};

  // Step `s`'s new tokens of both sequences (their pages taken).
  std::vector<StepSeq> step(size_t s) {
    std::vector<StepSeq> seqs(kSeqs);
    for (int i = 0; i < kSeqs; ++i) {
      const int n = kSteps[s][i];
      while (static_cast<int>(tables[i].size()) * kPageRows < len[i] + n)
        tables[i].push_back(pages++);
      toks[i].assign(n, 0);
      seqs[i] = {&tables[i], toks[i].data(), len[i], n};
    }
    return seqs;
  }
  // A step of no new rows: every position is its past.
  std::vector<StepSeq> past() {
    std::vector<StepSeq> seqs(kSeqs);
    for (int i = 0; i < kSeqs; ++i) seqs[i] = {&tables[i], nullptr, len[i], 0};
    return seqs;
  }
  // The CPU's row stores take step s's rows x (both sequences', in order); the lengths grow.
  template <typename Rows>
  void appended(size_t s, const std::vector<float>& x, int width, std::vector<Rows>& cpu) {
    for (int i = 0, r = 0; i < kSeqs; r += kSteps[s][i], ++i) {
      cpu[i].append(x.data() + static_cast<size_t>(r) * width, kSteps[s][i]);
      len[i] += kSteps[s][i];
    }
  }
  static int rows(size_t s) { return kSteps[s][0] + kSteps[s][1]; }
  static int max_pages() {
    int total = 0;
    for (const auto& s : kSteps) total += s[0] + s[1];
    return total / kPageRows + 2 * kSeqs;
  }
};

// A step's arrays (StepLayout's and the per-channel ones) on the device; `ws_rows` 0 for an
// append, else a workspace for reading the past.
struct DeviceStep {
  StepLayout L;
  ChannelStep c;
  DeviceBuf<int> ints;
  DeviceStep(const std::vector<StepSeq>& seqs, int ws_rows, int group, bool ring)
      : L(build_step_layout(seqs, ws_rows, 1)),
        c(build_channel_step(L, seqs, kSlots, group, ring)),
        ints(L.ints) {}
  const int* at(size_t offset) const { return ints.get() + offset; }
  ChannelSeqs seqs() const {
    return {reinterpret_cast<const AttnSeq*>(at(L.seqs)), at(L.tables), at(c.slots)};
  }
};

std::vector<float> random_rows(int rows, int width, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.5f);
  std::vector<float> x(static_cast<size_t>(rows) * width);
  for (float& v : x) v = nd(rng);
  // An outlier channel, as keys have.
  for (int r = 0; r < rows; ++r) x[static_cast<size_t>(r) * width + 1] *= 20.0f;
  return x;
}

// Workspace rows [row0, row0 + n) against the CPU's rows [0, n). The GPU writes fp16; the CPU's
// float dequantized value rounds to it within half an ulp.
void expect_close(const std::vector<half>& got, const std::vector<float>& want, int width, int row0,
                  int n, const std::string& what) {
  int bad = 0;
  for (int p = 0; p < n; ++p) {
    for (int c = 0; c < width; ++c) {
      const float g = __half2float(got[static_cast<size_t>(row0 + p) * width + c]);
      const float w = want[static_cast<size_t>(p) * width + c];
      if (!(std::fabs(g - w) <= std::fabs(w) * 1e-3f + 1e-6f) && ++bad <= 5)
        ADD_FAILURE() << what << ": position " << p << " channel " << c << ": " << g << " against "
                      << w;
    }
  }
}

class ChannelBlocksTest : public GpuTest,
                          public ::testing::WithParamInterface<std::tuple<int, int, int, bool>> {};

TEST_P(ChannelBlocksTest, AppendedStepsReadBackAsTheCpuRows) {
  const auto [width, bits, group, window] = GetParam();
  const ChannelBlockLayout layout{width, bits, group};
  const size_t slot_bytes = static_cast<size_t>(group) * width * 2;
  Sequences sq;
  std::vector<ChannelQuantRows> cpu;
  for (int i = 0; i < kSeqs; ++i) cpu.emplace_back(width, bits, group, window);
  DeviceBuf<uint8_t> pages(Sequences::max_pages() * layout.page_bytes());
  DeviceBuf<uint8_t> windows(kSeqs * slot_bytes);
  const ChannelStore st{pages.get(), layout.page_bytes(), windows.get(), slot_bytes, layout};
  std::mt19937 rng(5);
  for (size_t step = 0; step < kSteps.size(); ++step) {
    // Append: the step's rows of both sequences, batched.
    const int rows = Sequences::rows(step);
    const std::vector<float> x = random_rows(rows, width, rng);
    {
      const DeviceStep a(sq.step(step), 0, group, false);
      const DeviceBuf<float> dx(x);
      append_channel_rows(dx.get(), width, rows, a.at(a.L.row_seq), st, a.seqs(), a.at(a.c.blocks),
                          a.c.num_blocks, stream_);
      check(cudaStreamSynchronize(stream_), "append");
    }
    sq.appended(step, x, width, cpu);
    const DeviceStep d(sq.past(), 1 << 20, group, false);
    ASSERT_EQ(d.L.groups.size(), 1u);
    const StepLayout::Group& g = d.L.groups[0];
    DeviceBuf<half> out(static_cast<size_t>(g.ws_rows) * width);
    read_channel_blocks(st, d.seqs(), d.at(d.c.ws_seq[0]), d.at(g.ws_pos), g.ws_rows, out.get(),
                        width, stream_);
    read_channel_window(st, d.seqs(), 0, kSeqs, d.at(g.seq_x_row), WindowRead{false, !window},
                        out.get(), width, stream_);
    const std::vector<half> got = out.download();
    int row0 = 0;
    for (int i = 0; i < kSeqs; ++i) {
      const int len = sq.len[i];
      std::vector<float> want(static_cast<size_t>(len) * width);
      cpu[i].read(0, len, want.data());
      expect_close(got, want, width, row0, len,
                   "step " + std::to_string(step) + " sequence " + std::to_string(i));
      row0 += (len + kPageRows - 1) / kPageRows * kPageRows;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ChannelBlocksTest,
    ::testing::Values(std::tuple{64, 4, 32, true}, std::tuple{64, 2, 32, false},
                      std::tuple{40, 3, 128, true}, std::tuple{40, 3, 128, false},
                      std::tuple{31, 3, 32, false}, std::tuple{31, 8, 16, true},
                      std::tuple{48, 2, 8, false}, std::tuple{33, 3, 4, true},
                      std::tuple{64, 8, 64, false}, std::tuple{17, 4, 1, true}),
    [](const auto& i) {
      std::string name = "w";
      name += std::to_string(std::get<0>(i.param));
      name += "_b" + std::to_string(std::get<1>(i.param));
      name += "_g" + std::to_string(std::get<2>(i.param));
      name += std::get<3>(i.param) ? "_window" : "_nowindow";
      return name;
    });

// KIVI's values with the fp16 window: the last G stay fp16 in the ring, older ones are quantized
// per token as they leave it, each from its fp16 row, as TokenQuantRows with a window of G does.
class ValueRingTest : public GpuTest,
                      public ::testing::WithParamInterface<std::tuple<int, int, int>> {};

TEST_P(ValueRingTest, ValuesLeaveTheRingAsTheCpuWindowQuantizesThem) {
  const auto [width, bits, group] = GetParam();
  const QuantRowLayout rows_layout{width, bits, group};
  const size_t page_bytes = rows_layout.bytes() * kPageRows;
  const size_t slot_bytes = static_cast<size_t>(group) * width * 2;
  const ChannelBlockLayout ring_layout{width, 16, group};
  Sequences sq;
  std::vector<TokenQuantRows> cpu;
  for (int i = 0; i < kSeqs; ++i) cpu.emplace_back(width, bits, group, group);
  DeviceBuf<uint8_t> pages(Sequences::max_pages() * page_bytes);
  DeviceBuf<uint8_t> windows(kSeqs * slot_bytes);
  const ChannelStore ring{nullptr, 0, windows.get(), slot_bytes, ring_layout};
  std::mt19937 rng(7);
  for (size_t step = 0; step < kSteps.size(); ++step) {
    const int rows = Sequences::rows(step);
    const std::vector<float> x = random_rows(rows, width, rng);
    {
      const DeviceStep a(sq.step(step), 0, group, true);
      const DeviceBuf<float> dx(x);
      DeviceBuf<float> staged(std::max(a.c.num_spill, 1) * static_cast<size_t>(width));
      gather_ring_rows(dx.get(), width, ring, a.seqs(), a.at(a.c.spill), a.c.num_spill,
                       staged.get(), stream_);
      quantize_rows(staged.get(), a.c.num_spill, rows_layout, pages.get(), page_bytes,
                    RowMap{a.at(a.c.spill_page), a.at(a.c.spill_slot)}, stream_);
      write_ring_rows(dx.get(), width, rows, a.at(a.L.row_seq), ring, a.seqs(), stream_);
      check(cudaStreamSynchronize(stream_), "append");
    }
    sq.appended(step, x, width, cpu);
    const DeviceStep d(sq.past(), 1 << 20, group, true);
    const StepLayout::Group& g = d.L.groups[0];
    DeviceBuf<bf16> deq(static_cast<size_t>(g.ws_rows) * width);
    DeviceBuf<half> out(static_cast<size_t>(g.ws_rows) * width);
    dequantize_rows(pages.get(), page_bytes, rows_layout, g.ws_rows,
                    RowMap{d.at(g.src_page), d.at(g.src_slot)}, deq.get(), stream_, width);
    bf16_to_half(deq.get(), static_cast<size_t>(g.ws_rows) * width, out.get(), stream_);
    read_channel_window(ring, d.seqs(), 0, kSeqs, d.at(g.seq_x_row), WindowRead{true, false},
                        out.get(), width, stream_);
    const std::vector<half> got = out.download();
    int row0 = 0;
    for (int i = 0; i < kSeqs; ++i) {
      const int len = sq.len[i];
      std::vector<float> want(static_cast<size_t>(len) * width);
      cpu[i].read(0, len, want.data());
      for (int p = 0; p < len; ++p) {
        // Quantized rows pass through bf16 on their way to the fp16 workspace; the ring's are
        // the CPU's fp16 rows exactly.
        const bool in_ring = p >= len - group;
        for (int c = 0; c < width; ++c) {
          const float gv = __half2float(got[static_cast<size_t>(row0 + p) * width + c]);
          const float wv = want[static_cast<size_t>(p) * width + c];
          const float tol = in_ring ? 0.0f : std::fabs(wv) * 8e-3f + 1e-6f;
          ASSERT_LE(std::fabs(gv - wv), tol)
              << "step " << step << " sequence " << i << " position " << p << " channel " << c;
        }
      }
      row0 += (len + kPageRows - 1) / kPageRows * kPageRows;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ValueRingTest,
                         ::testing::Values(std::tuple{64, 4, 32}, std::tuple{40, 3, 128},
                                           std::tuple{32, 2, 8}, std::tuple{48, 8, 16}));

}  // namespace
}  // namespace xq::cuda
