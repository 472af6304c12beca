// The CUDA model's sliding-window rings (engine/cuda/sliding_ring.h) against the CPU model
// (the fixture: tests/unit/cuda_model_fixture.h). Skips without a GPU.
#include "tests/unit/cuda_model_fixture.h"

namespace xq {
namespace {

// The fixture's tests for every Case are instantiated in engine_cuda_model_test.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(CudaModelTest);

// The sliding-window rings (engine/cuda/sliding_ring.h) on a window of 32 and steps of at most
// 24 rows a sequence: rings of 5 pages (80 tokens), which contexts of 10 windows go round
// several times, in chunks, decodes and both together.
class CudaRingTest : public CudaModelTest {};

TEST_P(CudaRingTest, SlidingRingsGoRoundLikeTheCpuModel) {
  const CacheFormat& f = gpu_->cache_format();
  ASSERT_GT(f.sliding_tokens(), 0) << "the format claims the window discount";
  const int ring_tokens = f.sliding_tokens(), V = cfg_.vocab_size;
  EXPECT_EQ(ring_tokens, 5 * 16);
  EXPECT_GE(ring_tokens, cpu_->cache_format().sliding_tokens());
  // Two prompts in chunks of 24 and 17, side by side, then decodes, then a third sequence's
  // chunks next to the decodes.
  const auto a = tokens(240, 21, V), b = tokens(119, 22, V), c = tokens(150, 23, V);
  for (int i = 0; i * 24 < 240; ++i) {
    std::vector<std::vector<int>> toks{
        {a.begin() + i * 24, a.begin() + std::min(240, i * 24 + 24)}};
    std::vector<int> ids{0};
    if (i * 17 < 119) {
      toks.push_back({b.begin() + i * 17, b.begin() + std::min(119, i * 17 + 17)});
      ids.push_back(1);
    }
    step(ids, toks, true, tol(), "prefill chunks");
  }
  for (int t = 0; t < 60; ++t)
    step({0, 1}, {{(t * 7 + 1) % V}, {(t * 5 + 2) % V}}, false, tol(), "decode");
  for (int i = 0; i * 24 < 150; ++i) {
    std::vector<int> chunk(c.begin() + i * 24, c.begin() + std::min(150, i * 24 + 24));
    step({2, 0, 1}, {chunk, {i % V}, {(i + 3) % V}}, true, tol(), "chunks next to decodes");
  }
  for (int t = 0; t < 40; ++t)
    step({0, 1, 2}, {{t % V}, {(t + 1) % V}, {(t + 2) % V}}, false, tol(), "decode of three");
  // A sequence holds its pages of the global layers and no more than its ring of the others.
  const int n = gpu_caches_[0]->num_tokens();
  EXPECT_GT(n, 3 * ring_tokens);
  const double held =
      (n + 15) / 16 * 16 * f.bytes_per_token() + ring_tokens * f.sliding_bytes_per_token();
  EXPECT_DOUBLE_EQ(static_cast<double>(gpu_caches_[0]->bytes_used()), held);
  EXPECT_LE(static_cast<double>(gpu_caches_[0]->bytes_used()), f.sequence_bytes(n + 15));
  // A step larger than the rings take is refused, not run wrong.
  std::vector<SeqInput> big{
      {gpu_caches_[1].get(), tokens(25, 24, V), gpu_caches_[1]->num_tokens(), false}};
  std::vector<float> out;
  EXPECT_THROW(gpu_->forward(big, out), std::invalid_argument);
  // A ring that went round forgot its first rows: only a cut to 0.
  EXPECT_THROW(gpu_caches_[0]->truncate(n - 1), std::logic_error);
  gpu_caches_[0]->truncate(0);
  EXPECT_EQ(gpu_caches_[0]->bytes_used(), 0u);
  std::printf("worst relative error of the logits: %.3g\n", worst_);
}

INSTANTIATE_TEST_SUITE_P(
    Rings, CudaRingTest,
    ::testing::Values(
        Case{.arch = Arch::Gemma3, .format = "fp16", .bits = 16, .sliding = 32, .step_rows = 24},
        Case{.arch = Arch::Gemma3, .format = "xquant", .bits = 4, .sliding = 32, .step_rows = 24},
        Case{.arch = Arch::Gemma3, .format = "xquant", .bits = 16, .sliding = 32, .step_rows = 24},
        Case{.arch = Arch::Gemma3,
             .format = "xquant",
             .bits = 4,
             .latent = true,
             .sliding = 32,
             .step_rows = 24},
        // The fused decode kernel, high-precision first layers, the latent's fp16 K channels.
        Case{.arch = Arch::Gemma3,
             .format = "xquant",
             .bits = 4,
             .fused = true,
             .sliding = 32,
             .step_rows = 24},
        Case{.arch = Arch::Gemma3,
             .format = "xquant",
             .bits = 3,
             .latent = true,
             .fused = true,
             .hp = {1, 8},
             .sliding = 32,
             .step_rows = 24},
        Case{.arch = Arch::Gemma3,
             .format = "xquant",
             .bits = 4,
             .latent = true,
             .lead = 1,
             .sliding = 32,
             .step_rows = 24},
        // Workspace groups of 64 rows: every step's sequences in groups of their own.
        Case{.arch = Arch::Gemma3,
             .format = "xquant",
             .bits = 4,
             .remat_rows = 64,
             .sliding = 32,
             .step_rows = 24}),
    case_name);

}  // namespace
}  // namespace xq
