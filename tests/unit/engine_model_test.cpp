// Tests of the CPU model through the fp16 cache: batching, chunked prefill, decode, truncation,
// sliding windows, with random weights held in memory.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "engine/cache/cache_format.h"
#include "engine/model/cpu_model.h"
#include "tests/unit/engine_random_model.h"

namespace xq {
namespace {

// Runs `toks` through a fresh sequence in chunks of `chunk`, returning every position's logits.
std::vector<float> run_chunked(CpuModel& m, const std::vector<int>& toks, int chunk) {
  auto cache = m.cache_format().new_sequence();
  std::vector<float> all, out;
  for (size_t b = 0; b < toks.size(); b += chunk) {
    const size_t n = std::min<size_t>(chunk, toks.size() - b);
    SeqInput in{cache.get(), std::span<const int>(toks).subspan(b, n), static_cast<int>(b), true};
    m.forward(std::span<const SeqInput>(&in, 1), out);
    all.insert(all.end(), out.begin(), out.end());
  }
  return all;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float d = 0.0f;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

float max_abs(const std::vector<float>& a) {
  float m = 0.0f;
  for (float x : a) m = std::max(m, std::fabs(x));
  return m;
}

class ModelTest : public ::testing::TestWithParam<Arch> {
 protected:
  ModelTest() : cfg_(tiny_config(GetParam())), w_(random_weights(cfg_, 5)), m_(cfg_, w_, {}) {}
  ModelConfig cfg_;
  MemoryWeights w_;
  CpuModel m_;
};

TEST_P(ModelTest, ChunkedPrefillAndTokenByTokenDecodeAgree) {
  const auto toks = tokens(24, 1, cfg_.vocab_size);
  const auto whole = run_chunked(m_, toks, 24);
  ASSERT_EQ(whole.size(), toks.size() * cfg_.vocab_size);
  ASSERT_GT(max_abs(whole), 0.5f);
  // Later chunks read earlier ones from the fp16 cache: agreement up to fp16 rounding.
  EXPECT_LT(max_abs_diff(whole, run_chunked(m_, toks, 7)), 2e-3f * max_abs(whole));
  EXPECT_LT(max_abs_diff(whole, run_chunked(m_, toks, 1)), 2e-3f * max_abs(whole));
}

TEST_P(ModelTest, BatchOfSequencesEqualsEachAlone) {
  const std::vector<std::vector<int>> seqs = {
      tokens(5, 2, cfg_.vocab_size), tokens(11, 3, cfg_.vocab_size), tokens(1, 4, cfg_.vocab_size)};
  std::vector<std::unique_ptr<SequenceCache>> caches;
  std::vector<SeqInput> batch;
  for (size_t i = 0; i < seqs.size(); ++i) {
    caches.push_back(m_.cache_format().new_sequence());
    batch.push_back({caches.back().get(), seqs[i], 0, i != 1});  // the second: last row only
  }
  std::vector<float> together;
  m_.forward(batch, together);
  std::vector<float> alone;
  for (size_t i = 0; i < seqs.size(); ++i) {
    auto full = run_chunked(m_, seqs[i], 100);
    if (i == 1) full.erase(full.begin(), full.end() - cfg_.vocab_size);
    alone.insert(alone.end(), full.begin(), full.end());
  }
  EXPECT_LT(max_abs_diff(together, alone), 1e-5f * max_abs(alone));

  // A decode step of every sequence in one batch equals decoding each alone.
  std::vector<int> next = {3, 5, 7};
  std::vector<SeqInput> step;
  for (size_t i = 0; i < seqs.size(); ++i) {
    step.push_back({caches[i].get(), std::span<const int>(&next[i], 1),
                    static_cast<int>(seqs[i].size()), false});
  }
  m_.forward(step, together);
  for (size_t i = 0; i < seqs.size(); ++i) {
    auto s = seqs[i];
    s.push_back(next[i]);
    auto full = run_chunked(m_, s, 100);
    std::vector<float> last(full.end() - cfg_.vocab_size, full.end());
    std::vector<float> got(together.begin() + i * cfg_.vocab_size,
                           together.begin() + (i + 1) * cfg_.vocab_size);
    EXPECT_LT(max_abs_diff(got, last), 2e-3f * max_abs(last)) << i;
  }
}

TEST_P(ModelTest, TruncateForgetsTheTailAndCountsBytes) {
  const auto toks = tokens(10, 6, cfg_.vocab_size);
  auto cache = m_.cache_format().new_sequence();
  std::vector<float> out;
  SeqInput in{cache.get(), toks, 0, false};
  m_.forward(std::span<const SeqInput>(&in, 1), out);
  const CacheFormat& f = m_.cache_format();
  EXPECT_EQ(cache->num_tokens(), 10);
  EXPECT_EQ(cache->bytes_used(), f.sequence_bytes(10));
  EXPECT_EQ(f.bytes_per_token() + f.sliding_bytes_per_token(),
            2.0 * 2 * cfg_.kv_dim() * cfg_.num_layers);
  // Sliding layers (Gemma 3's, window 4) forgot the rows a cut to 6 would need again: only a cut
  // to 0 (preemption) works there.
  int cut = 6;
  if (cfg_.sliding_window > 0) {
    EXPECT_LT(f.sequence_bytes(10), 10 * (f.bytes_per_token() + f.sliding_bytes_per_token()));
    EXPECT_THROW(cache->truncate(6), std::logic_error);
    cut = 0;
  }
  cache->truncate(cut);
  EXPECT_EQ(cache->num_tokens(), cut);
  EXPECT_EQ(cache->bytes_used(), f.sequence_bytes(cut));
  // Re-running the forgotten tokens gives what a fresh 10-token run gives.
  SeqInput tail{cache.get(), std::span<const int>(toks).subspan(cut), cut, false};
  m_.forward(std::span<const SeqInput>(&tail, 1), out);
  auto fresh = run_chunked(m_, toks, 6);
  std::vector<float> last(fresh.end() - cfg_.vocab_size, fresh.end());
  EXPECT_LT(max_abs_diff(out, last), 1e-5f * max_abs(last));
}

TEST_P(ModelTest, StartPositionMustMatchTheCache) {
  auto cache = m_.cache_format().new_sequence();
  const auto toks = tokens(3, 7, cfg_.vocab_size);
  std::vector<float> out;
  SeqInput in{cache.get(), toks, 2, false};
  EXPECT_THROW(m_.forward(std::span<const SeqInput>(&in, 1), out), std::invalid_argument);
  const std::vector<int> bad = {cfg_.vocab_size};
  SeqInput oob{cache.get(), bad, 0, false};
  EXPECT_THROW(m_.forward(std::span<const SeqInput>(&oob, 1), out), std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(Archs, ModelTest, ::testing::Values(Arch::Llama, Arch::Gemma3),
                         [](const auto& info) {
                           return info.param == Arch::Gemma3 ? "Gemma3" : "Llama";
                         });

TEST(GemmaSlidingWindow, TokensOutsideTheReceptiveFieldDoNotMatter) {
  const ModelConfig c = tiny_config(Arch::Gemma3);  // 2 sliding layers, window 4
  auto w = random_weights(c, 9);
  CpuModel m(c, w, {});
  // Through two layers of window 4 the last token sees positions >= n - 7.
  auto a = tokens(12, 1, c.vocab_size);
  auto b = a;
  b[0] = (b[0] + 1) % c.vocab_size;
  b[3] = (b[3] + 5) % c.vocab_size;
  auto la = run_chunked(m, a, 12), lb = run_chunked(m, b, 12);
  std::vector<float> last_a(la.end() - c.vocab_size, la.end());
  std::vector<float> last_b(lb.end() - c.vocab_size, lb.end());
  EXPECT_EQ(max_abs_diff(last_a, last_b), 0.0f);
  // A token inside the field does change the output.
  b[8] = (b[8] + 1) % c.vocab_size;
  lb = run_chunked(m, b, 12);
  std::vector<float> last_c(lb.end() - c.vocab_size, lb.end());
  EXPECT_GT(max_abs_diff(last_a, last_c), 1e-4f);
}

TEST(ModelWeightsLoad, MissingTensorIsNamed) {
  const ModelConfig c = tiny_config(Arch::Llama);
  auto w = random_weights(c, 3);
  w.remove("model.layers.1.mlp.up_proj.weight");
  try {
    CpuModel m(c, w, {});
    FAIL() << "expected a WeightError";
  } catch (const WeightError& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.1.mlp.up_proj.weight"), std::string::npos);
  }
}

TEST(CacheFactory, UnknownFormatIsAConfigError) {
  const ModelConfig c = tiny_config(Arch::Llama);
  auto w = random_weights(c, 3);
  CacheOptions opts;
  opts.format = "no-such-format";
  EXPECT_THROW(CpuModel(c, w, opts), ConfigError);
}

}  // namespace
}  // namespace xq
