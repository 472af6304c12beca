// The CUDA model's step arrays (engine/cuda/step_layout.h) with sliding-window rings, on the
// host (no GPU needed): sequences step through chunks and decodes against a simulated cache
// whose slots remember which position was written there last; every position a query sees
// (its window) must be found through the ring's tables after the step's writes (the fp16 path
// writes before it attends), and through the ring's workspace sources before them (XQuant
// dequantizes the past first), while the positions no query sees are not dequantized at all.
// The global layers' arrays keep naming the sequence's own pages.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "engine/cuda/sliding_ring.h"
#include "engine/cuda/step_layout.h"

namespace xq::cuda {
namespace {

struct SimSeq {
  std::vector<int> pages, ring, tokens;
  int len = 0;
};

class RingSim {
 public:
  RingSim(int window, int max_step) : window_(window), R_(ring_pages_for(window, max_step)) {}

  // One step: seqs[i] gets n[i] new rows. Checks the arrays; then the rows count as written.
  void step(std::vector<SimSeq>& seqs, const std::vector<int>& n, int ws_rows) {
    std::vector<StepSeq> in;
    for (size_t i = 0; i < seqs.size(); ++i) {
      SimSeq& s = seqs[i];
      const int end = s.len + n[i], need = (end + kPageRows - 1) / kPageRows;
      while (static_cast<int>(s.pages.size()) < need) s.pages.push_back(next_page_++);
      while (static_cast<int>(s.ring.size()) < std::min(need, R_)) s.ring.push_back(next_ring_++);
      s.tokens.assign(n[i], 1);
      StepSeq q{&s.pages, s.tokens.data(), s.len, n[i]};
      q.ring = &s.ring;
      q.ring_pages = R_;
      q.window = window_;
      in.push_back(q);
    }
    const StepLayout L = build_step_layout(in, ws_rows, 2);
    const std::vector<int>& v = L.ints;
    ASSERT_TRUE(L.ring);
    // The workspace path reads the past before the step writes: the ring's sources.
    for (const StepLayout::Group& g : L.groups) {
      int row = 0;
      for (int i = g.seq_begin; i < g.seq_end; ++i) {
        const SimSeq& s = seqs[i];
        for (int p = 0; p < s.len + n[i]; ++p) {
          const int page = v[g.ring_src_page + row + p], slot = v[g.src_slot + row + p];
          if (p >= s.len || p <= s.len - window_) {
            EXPECT_EQ(page, -1) << "position " << p << " of a sequence at " << s.len;
          } else {
            EXPECT_EQ(ring_.at({page, slot}), std::make_pair(i, p)) << "ring source " << p;
            EXPECT_EQ(v[g.src_page + row + p], s.pages[p / kPageRows]);
          }
        }
        row += (s.len + n[i] + kPageRows - 1) / kPageRows * kPageRows;
      }
    }
    // The new rows, into their ring pages and their global pages.
    int r = 0;
    for (size_t i = 0; i < seqs.size(); ++i) {
      for (int j = 0; j < n[i]; ++j, ++r) {
        const int p = seqs[i].len + j;
        EXPECT_EQ(v[L.pos + r], p);
        EXPECT_EQ(v[L.new_page + r], seqs[i].pages[p / kPageRows]);
        ring_[{v[L.ring_new_page + r], v[L.new_slot + r]}] = {static_cast<int>(i), p};
      }
    }
    // Attention over the cache's pages after the writes: every query finds its window.
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int* a = &v[L.ring_seqs + 4 * i];
      const int* g = &v[L.seqs + 4 * i];
      EXPECT_EQ(std::vector<int>(a, a + 3), std::vector<int>(g, g + 3));
      EXPECT_EQ(a[2], seqs[i].len);
      EXPECT_GE(a[3], 0) << "a ring table's shifted offset stays inside the array";
      for (int q = a[2]; q < a[2] + a[1]; ++q) {
        for (int at = std::max(0, q - window_ + 1); at <= q; ++at) {
          const int page = v[L.tables + a[3] + at / kPageRows];
          EXPECT_EQ(ring_.at({page, at % kPageRows}), std::make_pair(static_cast<int>(i), at))
              << "query " << q << " position " << at;
        }
        for (int at = 0; at <= q; at += kPageRows)
          EXPECT_EQ(v[L.tables + g[3] + at / kPageRows], seqs[i].pages[at / kPageRows]);
      }
    }
    for (size_t i = 0; i < seqs.size(); ++i) seqs[i].len += n[i];
  }

  int ring_pages() const { return R_; }

 private:
  int window_, R_;
  int next_page_ = 0, next_ring_ = 0;
  std::map<std::pair<int, int>, std::pair<int, int>> ring_;  // (page, slot) -> (seq, position)
};

TEST(StepLayoutRing, QueriesFindTheirWindowThroughTheRing) {
  for (int window : {1, 8, 32, 40}) {
    for (int max_step : {1, 16, 24}) {
      RingSim sim(window, max_step);
      std::vector<SimSeq> seqs(3);
      std::mt19937 rng(window * 100 + max_step);
      std::uniform_int_distribution<int> chunk(1, max_step);
      // Prefill chunks of every size up to the largest, then decodes (the first sequence
      // keeps taking chunks), until every ring went round three times.
      const int laps = 3 * sim.ring_pages() * kPageRows;
      for (int t = 0; seqs[1].len <= laps; ++t) {
        std::vector<int> n;
        for (size_t i = 0; i < seqs.size(); ++i) n.push_back(t < 20 || i == 0 ? chunk(rng) : 1);
        sim.step(seqs, n, t % 2 == 0 ? 64 : 1 << 20);  // several workspace groups, or one
        if (HasFailure()) return;
      }
      for (const SimSeq& s : seqs) EXPECT_EQ(static_cast<int>(s.ring.size()), sim.ring_pages());
    }
  }
}

TEST(StepLayoutRing, WithoutRingsNoRingArrays) {
  std::vector<int> pages{4, 9}, tokens(20, 1);
  const StepLayout L = build_step_layout({StepSeq{&pages, tokens.data(), 0, 20}}, 64, 2);
  EXPECT_FALSE(L.ring);
  // The arrays as before: tokens, positions, row_seq, pages, slots, then the one AttnSeq.
  EXPECT_EQ(L.seqs, 5u * 20);
  EXPECT_EQ(L.tables, L.seqs + 4);
}

}  // namespace
}  // namespace xq::cuda
