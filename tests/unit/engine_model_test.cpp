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

namespace xq {
namespace {

// A WeightSource over fp32 tensors held in memory.
class MemoryWeights : public WeightSource {
 public:
  void add(const std::string& name, std::vector<int64_t> shape, std::vector<float> data) {
    Entry& e = tensors_[name];
    e.data = std::move(data);
    e.info.name = name;
    e.info.dtype = DType::F32;
    e.info.shape = std::move(shape);
    e.info.data = reinterpret_cast<const uint8_t*>(e.data.data());
    e.info.nbytes = e.data.size() * sizeof(float);
    e.info.file = "memory";
  }
  void remove(const std::string& name) { tensors_.erase(name); }
  const TensorInfo* find(const std::string& name) const override {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second.info;
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (const auto& [n, e] : tensors_) out.push_back(n);
    return out;
  }

 private:
  struct Entry {
    TensorInfo info;
    std::vector<float> data;
  };
  std::map<std::string, Entry> tensors_;
};

ModelConfig tiny_config(Arch arch) {
  ModelConfig c;
  c.arch = arch;
  c.model_type = arch == Arch::Gemma3 ? "gemma3_text" : "llama";
  c.vocab_size = 97;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.rms_norm_eps = 1e-6f;
  c.attention_bias = arch == Arch::Llama;
  if (arch == Arch::Gemma3) {
    c.sliding_window = 4;
    c.layer_is_sliding = {true, true};
    c.query_pre_attn_scalar = 8.0f;
    c.final_logit_softcap = 30.0f;
    c.attn_logit_softcap = 50.0f;
    c.tie_word_embeddings = true;
  }
  return c;
}

MemoryWeights random_weights(const ModelConfig& c, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  MemoryWeights w;
  auto t = [&](const std::string& name, std::vector<int64_t> shape, float scale, float mean) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(n);
    for (float& x : v) x = mean + scale * nd(rng);
    w.add(name, std::move(shape), std::move(v));
  };
  const int64_t H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim();
  const bool gemma = c.arch == Arch::Gemma3;
  const float norm_mean = gemma ? 0.0f : 1.0f;  // Gemma norms multiply by (1 + w)
  t("model.embed_tokens.weight", {c.vocab_size, H}, 1.0f, 0.0f);
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t(p + "input_layernorm.weight", {H}, 0.1f, norm_mean);
    t(p + "self_attn.q_proj.weight", {Q, H}, 0.3f, 0.0f);
    t(p + "self_attn.k_proj.weight", {KV, H}, 0.3f, 0.0f);
    t(p + "self_attn.v_proj.weight", {KV, H}, 0.3f, 0.0f);
    t(p + "self_attn.o_proj.weight", {H, Q}, 0.2f, 0.0f);
    if (c.attention_bias) {
      t(p + "self_attn.q_proj.bias", {Q}, 0.1f, 0.0f);
      t(p + "self_attn.k_proj.bias", {KV}, 0.1f, 0.0f);
      t(p + "self_attn.v_proj.bias", {KV}, 0.1f, 0.0f);
    }
    t(p + "mlp.gate_proj.weight", {I, H}, 0.2f, 0.0f);
    t(p + "mlp.up_proj.weight", {I, H}, 0.2f, 0.0f);
    t(p + "mlp.down_proj.weight", {H, I}, 0.2f, 0.0f);
    if (gemma) {
      t(p + "self_attn.q_norm.weight", {c.head_dim}, 0.1f, 0.0f);
      t(p + "self_attn.k_norm.weight", {c.head_dim}, 0.1f, 0.0f);
      t(p + "post_attention_layernorm.weight", {H}, 0.1f, 0.0f);
      t(p + "pre_feedforward_layernorm.weight", {H}, 0.1f, 0.0f);
      t(p + "post_feedforward_layernorm.weight", {H}, 0.1f, 0.0f);
    } else {
      t(p + "post_attention_layernorm.weight", {H}, 0.1f, 1.0f);
    }
  }
  t("model.norm.weight", {H}, 0.1f, norm_mean);
  if (!c.tie_word_embeddings) t("lm_head.weight", {c.vocab_size, H}, 0.2f, 0.0f);
  return w;
}

std::vector<int> tokens(int n, int seed, int vocab) {
  std::vector<int> t(n);
  for (int i = 0; i < n; ++i) t[i] = (seed * 31 + i * 17 + i * i * 7) % vocab;
  return t;
}

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
