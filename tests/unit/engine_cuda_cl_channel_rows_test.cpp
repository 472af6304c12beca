// XQuant-CL -ch kernels (kernels/cuda/cl_channel_ops.h, and the channel-block kernels as the
// accumulator drives them), with the step arrays that drive them (build_cl_block_step), against
// host references over steps of mixed sizes on interleaved pages:
// - staged delta blocks quantized through their stand-in sequences read back, within the same
//   step, as the CPU's ChannelQuantRows blocks of the same rows (added to an fp32 accumulator,
//   or as bf16 for the latent's lift);
// - the windows keep S (fp16 X or the fp32 residual stream) of the unfilled block, the block
//   deltas are S minus the accumulator row of their position, and the window rows are rebuilt
//   as bf16 of S or of its RMSNorm;
// - without the fp16 window, the window positions' deltas against the accumulator quantized as
//   one partial block per sequence as the CPU's ChannelQuantRows quantizes the same rows, their
//   A = accumulator + deq rebuilt as bf16 and carried into the accumulator only where the step
//   does not fill the block. Skips without a CUDA GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/cache/quantized_rows.h"
#include "engine/cuda/channel_step.h"
#include "kernels/cuda/cl_channel_ops.h"
#include "tests/unit/cuda_test_support.h"

namespace xq::cuda {
namespace {

using test::DeviceBuf;
using test::GpuTest;

constexpr int kSeqs = 2;
const std::vector<int> kWindowSlots = {1, 0};  // not in the sequences' order
// New tokens per step and sequence: blocks filled by prefills, decodes and chunks, or not.
const std::vector<std::vector<int>> kNew = {{70, 3}, {1, 1},   {1, 40}, {33, 1},
                                            {1, 1},  {130, 2}, {1, 17}, {5, 1}};

// The sequences' pages (handed out in turn, so they interleave) and lengths; step(s) is step s
// as the model lays it out: one workspace group, the per-channel arrays, the staged blocks.
struct Steps {
  std::vector<std::vector<int>> pages{kSeqs};
  std::vector<int> len = std::vector<int>(kSeqs, 0);
  std::vector<std::vector<int>> toks{kSeqs};
  int used = 0;

  std::vector<StepSeq> seqs(size_t s) {
    std::vector<StepSeq> out;
    for (int i = 0; i < kSeqs; ++i) {
      while (static_cast<int>(pages[i].size()) * kPageRows < len[i] + kNew[s][i])
        pages[i].push_back(used++);
      toks[i].assign(kNew[s][i], 0);
      out.push_back({&pages[i], toks[i].data(), len[i], kNew[s][i]});
    }
    return out;
  }
  static int max_pages() {
    int total = 0;
    for (const auto& s : kNew) total += s[0] + s[1];
    return total / kPageRows + 2 * kSeqs;
  }
};

struct DeviceStep {
  StepLayout L;
  ChannelStep c;
  ClBlockStep b;
  DeviceBuf<int> ints;
  DeviceStep(const std::vector<StepSeq>& seqs, int group)
      : L(build_step_layout(seqs, 1 << 20, 1)),
        c(build_channel_step(L, seqs, kWindowSlots, group, false)),
        b(build_cl_block_step(L, c, group)),
        ints(L.ints) {}
  const int* at(size_t offset) const { return ints.get() + offset; }
  const StepLayout::Group& group() const { return L.groups.at(0); }
  ChannelSeqs seqs() const {
    return {reinterpret_cast<const AttnSeq*>(at(L.seqs)), at(L.tables), at(c.slots)};
  }
  ChannelSeqs stand_ins() const {
    return {reinterpret_cast<const AttnSeq*>(at(b.seqs)), at(L.tables), at(b.slots)};
  }
  int ws_row(int i) const { return L.ints[group().seq_x_row + i]; }
};

std::vector<float> random_rows(size_t rows, int width, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(rows * width);
  for (float& v : x) v = nd(rng);
  for (size_t r = 0; r < rows; ++r) x[r * width + 1] *= 30.0f;  // an outlier channel
  return x;
}

class ClStagedBlocksTest : public GpuTest,
                           public ::testing::WithParamInterface<std::tuple<int, int, int>> {};

TEST_P(ClStagedBlocksTest, ReadBackThroughTheStepAsTheCpuBlocks) {
  const auto [width, bits, group] = GetParam();
  const ChannelBlockLayout layout{width, bits, group};
  Steps sq;
  std::vector<ChannelQuantRows> cpu;
  for (int i = 0; i < kSeqs; ++i) cpu.emplace_back(width, bits, group);
  DeviceBuf<uint8_t> pages(Steps::max_pages() * layout.page_bytes());
  DeviceBuf<uint8_t> windows(16);  // the stand-ins start at their blocks: never read
  const ChannelStore st{pages.get(), layout.page_bytes(), windows.get(), 0, layout};
  std::mt19937 rng(3);
  int filled_blocks = 0;
  for (size_t s = 0; s < kNew.size(); ++s) {
    const DeviceStep d(sq.seqs(s), group);
    const StepLayout::Group& g = d.group();
    const std::vector<float> staged =
        random_rows(static_cast<size_t>(d.b.num_blocks) * group, width, rng);
    const DeviceBuf<float> staged_d(staged);
    quantize_channel_blocks(staged_d.get(), width, st, d.stand_ins(), d.at(d.b.blocks),
                            d.b.num_blocks, stream_);
    for (int j = 0; j < d.b.num_blocks; ++j)
      cpu[d.L.ints[d.c.blocks + 2 * j]].append(&staged[static_cast<size_t>(j) * group * width],
                                               group);
    filled_blocks += d.b.num_blocks;
    const size_t n = static_cast<size_t>(g.ws_rows) * width;
    DeviceBuf<float> acc(std::vector<float>(n, 1.0f));
    add_step_blocks(st, d.seqs(), d.at(d.c.ws_seq[0]), d.at(g.ws_pos), g.ws_rows, acc.get(), width,
                    true, stream_);
    DeviceBuf<float> set(std::vector<float>(n, 7.0f));
    add_step_blocks(st, d.seqs(), d.at(d.c.ws_seq[0]), d.at(g.ws_pos), g.ws_rows, set.get(), width,
                    false, stream_);
    DeviceBuf<bf16> lifted(n);
    read_step_blocks(st, d.seqs(), d.at(d.c.ws_seq[0]), d.at(g.ws_pos), g.ws_rows, lifted.get(),
                     width, stream_);
    const std::vector<float> got_acc = acc.download(), got_set = set.download();
    const std::vector<bf16> got_bf16 = lifted.download();
    for (int i = 0; i < kSeqs; ++i) {
      const int end = sq.len[i] + kNew[s][i], filled = cpu[i].rows();
      ASSERT_EQ(filled, end - end % group) << "step " << s << " sequence " << i;
      std::vector<float> want(static_cast<size_t>(filled) * width);
      cpu[i].read(0, filled, want.data());
      int bad = 0;
      for (int p = 0; p < end; ++p) {
        for (int c = 0; c < width; ++c) {
          const size_t at = static_cast<size_t>(d.ws_row(i) + p) * width + c;
          if (p >= filled) {  // the unfilled block's rows are left alone
            if ((got_acc[at] != 1.0f || got_set[at] != 7.0f) && ++bad <= 5)
              ADD_FAILURE() << "step " << s << " seq " << i << " pos " << p << " was written";
            continue;
          }
          const float w = want[static_cast<size_t>(p) * width + c];
          const float tol = std::fabs(w) * 1e-6f + 1e-6f;
          const bool ok = std::fabs(got_acc[at] - (1.0f + w)) <= tol + 1e-6f &&
                          std::fabs(got_set[at] - w) <= tol &&
                          std::fabs(__bfloat162float(got_bf16[at]) - w) <= std::fabs(w) / 128;
          if (!ok && ++bad <= 5)
            ADD_FAILURE() << "step " << s << " seq " << i << " pos " << p << " channel " << c
                          << ": " << got_set[at] << " / " << got_acc[at] << " against " << w;
        }
      }
    }
    for (int i = 0; i < kSeqs; ++i) sq.len[i] += kNew[s][i];
  }
  // Every block the steps filled was staged once: the sequences' whole blocks.
  int whole_blocks = 0;
  for (int i = 0; i < kSeqs; ++i) whole_blocks += sq.len[i] / group;
  EXPECT_EQ(filled_blocks, whole_blocks);
  EXPECT_GT(filled_blocks, 0);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ClStagedBlocksTest,
                         ::testing::Values(std::tuple{64, 2, 32}, std::tuple{40, 3, 128},
                                           std::tuple{48, 4, 8}, std::tuple{33, 3, 16},
                                           std::tuple{128, 8, 64}),
                         [](const auto& i) {
                           std::string name = "w";
                           name += std::to_string(std::get<0>(i.param));
                           name += "_b" + std::to_string(std::get<1>(i.param));
                           name += "_g" + std::to_string(std::get<2>(i.param));
                           return name;
                         });

// The host's windows after step s (cl_window_write): each sequence's rows past the step's last
// filled block, as the window keeps them; then the sequences grow.
void keep_in_window(const std::vector<float>& src, int width, int group, bool fp32, size_t s,
                    Steps& sq, std::vector<std::vector<float>>& host) {
  for (int i = 0, r = 0; i < kSeqs; r += kNew[s][i], ++i) {
    const int end = sq.len[i] + kNew[s][i];
    for (int k = 0; k < kNew[s][i]; ++k) {
      const int p = sq.len[i] + k;
      if (p < end - end % group) continue;
      for (int c = 0; c < width; ++c) {
        const float v = src[static_cast<size_t>(r + k) * width + c];
        host[i][(p % group) * width + c] = fp32 ? v : __half2float(__float2half_rn(v));
      }
    }
  }
  for (int i = 0; i < kSeqs; ++i) sq.len[i] += kNew[s][i];
}

class ClWindowTest : public GpuTest,
                     public ::testing::WithParamInterface<std::tuple<int, int, bool>> {};

TEST_P(ClWindowTest, WindowsKeepSAndDeltasSubtractTheAccumulator) {
  const auto [width, group, fp32] = GetParam();
  const size_t slot_bytes = (static_cast<size_t>(group) * width * (fp32 ? 4 : 2) + 15) / 16 * 16;
  DeviceBuf<uint8_t> windows(kSeqs * slot_bytes);
  const ClWindow win{windows.get(), slot_bytes, width, group, fp32};
  auto kept = [fp32](float v) { return fp32 ? v : __half2float(__float2half_rn(v)); };
  std::vector<std::vector<float>> host(kSeqs, std::vector<float>(group * width, NAN));
  Steps sq;
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> weight(0.5f, 1.5f);
  std::vector<float> norm(width);
  for (float& w : norm) w = weight(rng);
  const DeviceBuf<float> norm_d(norm);
  const float eps = 1e-6f;
  int window_rows = 0;
  for (size_t s = 0; s < kNew.size(); ++s) {
    const DeviceStep d(sq.seqs(s), group);
    const StepLayout::Group& g = d.group();
    const std::vector<float> src = random_rows(d.L.rows, width, rng);
    const std::vector<float> acc = random_rows(g.ws_rows, width, rng);
    const DeviceBuf<float> src_d(src), acc_d(acc);
    DeviceBuf<float> deltas(
        std::max<size_t>(1, static_cast<size_t>(d.c.num_blocks) * group * width));
    cl_block_deltas(src_d.get(), width, win, d.seqs(), d.at(d.c.blocks), d.c.num_blocks, 0, 0,
                    d.at(g.seq_x_row), acc_d.get(), true, deltas.get(), stream_);
    const bf16 sentinel = __float2bfloat16_rn(9.0f);
    DeviceBuf<bf16> x(std::vector<bf16>(static_cast<size_t>(g.ws_rows) * width, sentinel));
    DeviceBuf<bf16> normed(std::vector<bf16>(static_cast<size_t>(g.ws_rows) * width, sentinel));
    cl_window_rows(win, d.seqs(), 0, kSeqs, d.at(g.seq_x_row), nullptr, eps, false, x.get(),
                   stream_);
    cl_window_rows(win, d.seqs(), 0, kSeqs, d.at(g.seq_x_row), norm_d.get(), eps, false,
                   normed.get(), stream_);
    cl_window_write(src_d.get(), width, 0, d.L.rows, d.at(d.L.row_seq), win, d.seqs(), stream_);
    const std::vector<float> got = deltas.download();
    const std::vector<bf16> got_x = x.download(), got_n = normed.download();
    // The deltas: S from the window before the step, else the new row as the window keeps it.
    for (int j = 0; j < d.c.num_blocks; ++j) {
      const int i = d.L.ints[d.c.blocks + 2 * j], b = d.L.ints[d.c.blocks + 2 * j + 1];
      const int q_row = d.L.ints[d.L.seqs + 4 * i];
      for (int t = 0; t < group; ++t) {
        const int p = b * group + t;
        for (int c = 0; c < width; ++c) {
          const float v = p < sq.len[i] ? host[i][(p % group) * width + c]
                                        : kept(src[(q_row + p - sq.len[i]) * width + c]);
          const float want = v - acc[(static_cast<size_t>(d.ws_row(i)) + p) * width + c];
          ASSERT_EQ(got[(static_cast<size_t>(j) * group + t) * width + c], want)
              << "step " << s << " block " << j << " row " << t << " channel " << c;
        }
      }
    }
    // The window's rows before the step, and nothing else.
    for (int i = 0; i < kSeqs; ++i) {
      const int lo = sq.len[i] - sq.len[i] % group;
      for (int p = 0; p < sq.len[i] + kNew[s][i]; ++p) {
        const size_t row = static_cast<size_t>(d.ws_row(i)) + p;
        if (p < lo || p >= sq.len[i]) {
          EXPECT_EQ(test::bf16_bits(got_x[row * width]), test::bf16_bits(sentinel)) << p;
          continue;
        }
        ++window_rows;
        const float* v = &host[i][(p % group) * width];
        double ss = 0;
        for (int c = 0; c < width; ++c) ss += static_cast<double>(v[c]) * v[c];
        const float inv = static_cast<float>(1.0 / std::sqrt(ss / width + eps));
        for (int c = 0; c < width; ++c) {
          EXPECT_EQ(test::bf16_bits(got_x[row * width + c]),
                    test::bf16_bits(__float2bfloat16_rn(v[c])))
              << "step " << s << " seq " << i << " pos " << p << " channel " << c;
          const float n = v[c] * inv * norm[c];
          EXPECT_NEAR(__bfloat162float(got_n[row * width + c]), n, std::fabs(n) / 64 + 1e-6f)
              << "step " << s << " seq " << i << " pos " << p << " channel " << c;
        }
      }
    }
    // The window takes the rows past the step's last filled block.
    keep_in_window(src, width, group, fp32, s, sq, host);
  }
  EXPECT_GT(window_rows, 10);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ClWindowTest,
                         ::testing::Values(std::tuple{64, 32, true}, std::tuple{40, 8, false},
                                           std::tuple{33, 16, true}, std::tuple{48, 128, false}),
                         [](const auto& i) {
                           std::string name = "w";
                           name += std::to_string(std::get<0>(i.param));
                           name += "_g" + std::to_string(std::get<1>(i.param));
                           name += std::get<2>(i.param) ? "_fp32" : "_fp16";
                           return name;
                         });

class ClWindowPartialTest : public GpuTest,
                            public ::testing::WithParamInterface<std::tuple<int, int, bool, int>> {
};

TEST_P(ClWindowPartialTest, WindowDeltasQuantizeAsTheCpusPartialBlock) {
  const auto [width, group, fp32, bits] = GetParam();
  const size_t slot_bytes = (static_cast<size_t>(group) * width * (fp32 ? 4 : 2) + 15) / 16 * 16;
  DeviceBuf<uint8_t> windows(kSeqs * slot_bytes);
  const ClWindow win{windows.get(), slot_bytes, width, group, fp32};
  std::vector<std::vector<float>> host(kSeqs, std::vector<float>(group * width, NAN));
  Steps sq;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> weight(0.5f, 1.5f);
  std::vector<float> norm(width);
  for (float& w : norm) w = weight(rng);
  const DeviceBuf<float> norm_d(norm);
  const float eps = 1e-6f;
  int window_rows = 0, carried_rows = 0;
  for (size_t s = 0; s < kNew.size(); ++s) {
    const DeviceStep d(sq.seqs(s), group);
    const StepLayout::Group& g = d.group();
    const size_t n = static_cast<size_t>(g.ws_rows) * width;
    const std::vector<float> src = random_rows(d.L.rows, width, rng);
    const std::vector<float> acc = random_rows(g.ws_rows, width, rng);
    const DeviceBuf<float> src_d(src), acc_d(acc);
    DeviceBuf<float> part(std::vector<float>(n, 5.0f)), carried(acc);
    DeviceBuf<bf16> part_b(std::vector<bf16>(n, __float2bfloat16_rn(5.0f)));
    const bf16 sentinel = __float2bfloat16_rn(9.0f);
    DeviceBuf<bf16> x(std::vector<bf16>(n, sentinel));
    const int* ws_row = d.at(g.seq_x_row);
    cl_window_deltas(win, d.seqs(), 0, kSeqs, ws_row, acc_d.get(), true, part.get(), stream_);
    const std::vector<float> deltas = part.download();
    quantize_window_partial(part.get(), width, group, bits, d.seqs(), 0, kSeqs, ws_row,
                            part_b.get(), stream_);
    quantize_window_partial(part.get(), width, group, bits, d.seqs(), 0, kSeqs, ws_row, part.get(),
                            stream_);
    const std::vector<float> quantized = part.download();
    const std::vector<bf16> quantized_b = part_b.download();
    cl_window_add(acc_d.get(), width, group, d.seqs(), 0, kSeqs, ws_row, part.get(), stream_);
    const std::vector<float> sum = part.download();
    cl_window_partial_rows(part.get(), width, group, d.seqs(), 0, kSeqs, ws_row, nullptr, eps,
                           false, x.get(), carried.get(), stream_);
    // The residual stream's rows: the layer's norm of A (carrying A twice changes nothing).
    DeviceBuf<bf16> normed(std::vector<bf16>(n, sentinel));
    cl_window_partial_rows(part.get(), width, group, d.seqs(), 0, kSeqs, ws_row, norm_d.get(), eps,
                           false, normed.get(), carried.get(), stream_);
    const std::vector<bf16> got_x = x.download(), got_n = normed.download();
    const std::vector<float> got_acc = carried.download();
    for (int i = 0; i < kSeqs; ++i) {
      const int start = sq.len[i], lo = start - start % group, end = start + kNew[s][i];
      const bool filled = end >= lo + group;
      const size_t row0 = static_cast<size_t>(d.ws_row(i));
      // The CPU's partial block: the deltas' rows [lo, start) as one block of that many rows.
      std::vector<float> want;
      if (lo < start) {
        ChannelQuantRows block(width, bits, start - lo);
        block.append(&deltas[(row0 + lo) * width], start - lo);
        want.resize(static_cast<size_t>(start - lo) * width);
        block.read(0, start - lo, want.data());
      }
      for (int p = 0; p < end; ++p) {
        const size_t row = row0 + p;
        const bool in_window = p >= lo && p < start;
        for (int c = 0; c < width; ++c) {
          const size_t at = row * width + c;
          if (!in_window) {
            ASSERT_EQ(deltas[at], 5.0f) << "step " << s << " pos " << p << " written";
            ASSERT_EQ(test::bf16_bits(got_x[at]), test::bf16_bits(sentinel)) << p;
            ASSERT_EQ(got_acc[at], acc[at]) << p;
            continue;
          }
          const float w = want[static_cast<size_t>(p - lo) * width + c];
          ASSERT_EQ(deltas[at], host[i][(p % group) * width + c] - acc[at])
              << "step " << s << " seq " << i << " pos " << p << " channel " << c;
          ASSERT_EQ(quantized[at], w)
              << "step " << s << " seq " << i << " pos " << p << " ch " << c;
          ASSERT_EQ(test::bf16_bits(quantized_b[at]), test::bf16_bits(__float2bfloat16_rn(w)));
          ASSERT_EQ(sum[at], w + acc[at]);
          ASSERT_EQ(test::bf16_bits(got_x[at]), test::bf16_bits(__float2bfloat16_rn(sum[at])));
          ASSERT_EQ(got_acc[at], filled ? acc[at] : sum[at]) << "step " << s << " pos " << p;
        }
        if (!in_window) continue;
        ++window_rows;
        carried_rows += !filled;
        double ss = 0;
        for (int c = 0; c < width; ++c)
          ss += static_cast<double>(sum[row * width + c]) * sum[row * width + c];
        const float inv = static_cast<float>(1.0 / std::sqrt(ss / width + eps));
        for (int c = 0; c < width; ++c) {
          const float want_n = sum[row * width + c] * inv * norm[c];
          EXPECT_NEAR(__bfloat162float(got_n[row * width + c]), want_n,
                      std::fabs(want_n) / 64 + 1e-6f)
              << "step " << s << " seq " << i << " pos " << p << " channel " << c;
        }
      }
    }
    cl_window_write(src_d.get(), width, 0, d.L.rows, d.at(d.L.row_seq), win, d.seqs(), stream_);
    keep_in_window(src, width, group, fp32, s, sq, host);
  }
  EXPECT_GT(window_rows, 10);
  EXPECT_GT(carried_rows, 0);
  EXPECT_GT(window_rows, carried_rows);  // some blocks filled by the step too
}

INSTANTIATE_TEST_SUITE_P(Shapes, ClWindowPartialTest,
                         ::testing::Values(std::tuple{64, 32, true, 2}, std::tuple{40, 8, false, 3},
                                           std::tuple{33, 16, true, 16},
                                           std::tuple{48, 128, false, 4},
                                           std::tuple{300, 32, true, 8}),
                         [](const auto& i) {
                           std::string name = "w";
                           name += std::to_string(std::get<0>(i.param));
                           name += "_g" + std::to_string(std::get<1>(i.param));
                           name += std::get<2>(i.param) ? "_fp32" : "_fp16";
                           name += "_b" + std::to_string(std::get<3>(i.param));
                           return name;
                         });

}  // namespace
}  // namespace xq::cuda
