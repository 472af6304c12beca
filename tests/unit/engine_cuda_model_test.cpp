// The CUDA model against the CPU reference model on tiny random models (bf16 weights, so both
// hold the same numbers): prefill, batched decode, chunked prefill, cache truncation, for the fp16
// K/V cache, XQuant's X at 2 to 16 bits and the GQA latent, with high-precision first layers
// and the K latent's fp16 channels, through the workspace path and the fused decode kernel; the
// per-channel formats (KIVI, xquant-ch, the per-channel K latent; G 8, 32 and 128, with and
// without the fp16 window) over sequences that cross their blocks; XQuant-CL's per-token and
// per-channel (-ch) forms (X-wide, residual stream, the GQA latent, base bits, latent base,
// high-precision layers, G 8 to 128, steps of several workspace groups with the accumulator kept
// or rebuilt; with and without the fp16 window); CUDA graph replays against
// eager steps; each layer's bytes per token against the CPU format's; and the GPU memory budget.
// Skips without a GPU.
#include "tests/unit/cuda_model_fixture.h"

namespace xq {
namespace {

INSTANTIATE_TEST_SUITE_P(
    Formats, CudaModelTest,
    ::testing::Values(
        Case{Arch::Llama, "fp16", 16}, Case{Arch::Llama, "xquant", 4},
        Case{Arch::Llama, "xquant", 8}, Case{Arch::Llama, "xquant", 4, true},
        Case{Arch::Llama, "xquant", 16, true}, Case{Arch::Gemma3, "fp16", 16},
        Case{Arch::Gemma3, "xquant", 4}, Case{Arch::Gemma3, "xquant", 4, true},
        Case{Arch::Llama, "xquant", 4, false, true}, Case{Arch::Llama, "xquant", 16, true, true},
        Case{Arch::Gemma3, "xquant", 4, true, true}, Case{Arch::Gemma3, "xquant", 3, false, true},
        // High-precision first layers (pages of mixed row sizes), X and latent.
        Case{Arch::Llama, "xquant", 16, false, false, {2, 8}},
        Case{Arch::Llama, "xquant", 2, false, false, {2, 4}},
        Case{Arch::Gemma3, "xquant", 3, false, true, {1, 8}},
        Case{Arch::Llama, "xquant", 4, true, false, {1, 8}},
        Case{Arch::Gemma3, "xquant", 4, true, true, {1, 8}},
        // The K latent's first channel in fp16 (rows in three parts).
        Case{Arch::Llama, "xquant", 16, true, false, {2, 8}, 1},
        Case{Arch::Gemma3, "xquant", 4, true, false, {}, 1},
        // KIVI: keys per channel, values per token; the fp16 window on and off.
        Case{Arch::Llama, "kivi", 4}, Case{Arch::Llama, "kivi", 8},
        Case{Arch::Llama, "kivi", 2, false, false, {}, 0, "token", 32, false},
        Case{Arch::Llama, "kivi", 3, false, false, {1, 8}, 0, "token", 128},
        Case{Arch::Llama, "kivi", 4, false, false, {2, 4}, 0, "token", 128, false},
        Case{Arch::Llama, "kivi", 4, false, false, {}, 0, "token", 8},
        Case{Arch::Gemma3, "kivi", 4, false, false, {}, 0, "token", 32, false},
        Case{Arch::Gemma3, "kivi", 3, false, false, {}, 0, "token", 128},
        // xquant-ch: X per channel (16 bits: fp16 rows).
        Case{Arch::Llama, "xquant-ch", 4}, Case{Arch::Llama, "xquant-ch", 16},
        Case{Arch::Llama, "xquant-ch", 8, false, false, {}, 0, "token", 128, false},
        Case{Arch::Llama, "xquant-ch", 3, false, false, {1, 16}, 0, "token", 32, false},
        Case{Arch::Gemma3, "xquant-ch", 4, false, false, {}, 0, "token", 128},
        Case{Arch::Gemma3, "xquant-ch", 2, false, false, {2, 4}, 0, "token", 8, false},
        // The per-channel K latent, with and without its fp16 channel 0.
        Case{Arch::Llama, "xquant", 4, true, false, {}, 0, "channel"},
        Case{Arch::Llama, "xquant", 16, true, false, {}, 0, "channel"},
        Case{Arch::Llama, "xquant", 8, true, false, {1, 4}, 1, "channel", 128},
        Case{Arch::Llama, "xquant", 3, true, false, {}, 1, "channel", 32, false},
        Case{Arch::Gemma3, "xquant", 4, true, false, {}, 0, "channel", 128, false},
        Case{Arch::Gemma3, "xquant", 2, true, false, {2, 8}, 1, "channel", 32},
        // The latent's V folded inside the attention (XQ_CUDA_ATTN_FOLD=1), at 4 and 16 bits,
        // with high-precision layers and with the K latent's fp16 channel.
        Case{.arch = Arch::Llama, .format = "xquant", .bits = 4, .latent = true, .attn_fold = true},
        Case{.arch = Arch::Llama, .format = "xquant", .bits = 16, .latent = true, .attn_fold = true},
        Case{.arch = Arch::Llama,
             .format = "xquant",
             .bits = 4,
             .latent = true,
             .hp = {1, 8},
             .lead = 1,
             .attn_fold = true}),
    case_name);

// XQuant-CL's per-token forms.
INSTANTIATE_TEST_SUITE_P(
    ClFormats, CudaModelTest,
    ::testing::Values(
        // X-wide: lossless at 16 bits, MHA and GQA, both streams.
        Case{.arch = Arch::Llama, .format = "xquant-cl", .bits = 16, .mha = true},
        Case{.arch = Arch::Llama, .format = "xquant-cl", .bits = 2, .mha = true},
        Case{.arch = Arch::Llama, .format = "xquant-cl", .bits = 4},
        Case{.arch = Arch::Gemma3, .format = "xquant-cl", .bits = 2},
        Case{.arch = Arch::Llama, .format = "xquant-cl-residual", .bits = 4},
        Case{.arch = Arch::Gemma3, .format = "xquant-cl-residual", .bits = 16},
        // The GQA latent form (the paper's), with Gemma's two chains.
        Case{.arch = Arch::Llama, .format = "xquant-cl", .bits = 16, .latent = true},
        Case{.arch = Arch::Llama, .format = "xquant-cl", .bits = 2, .latent = true},
        Case{.arch = Arch::Gemma3, .format = "xquant-cl", .bits = 16, .latent = true},
        Case{.arch = Arch::Gemma3, .format = "xquant-cl", .bits = 4, .latent = true},
        // Table 4's shape: first layers at 4 bits, the last of them the base.
        Case{.arch = Arch::Llama, .format = "xquant-cl", .bits = 2, .latent = true, .hp = {2, 4}},
        Case{.arch = Arch::Llama, .format = "xquant-cl", .bits = 3, .hp = {1, 8}, .base_bits = 4},
        Case{.arch = Arch::Llama,
             .format = "xquant-cl",
             .bits = 4,
             .latent = true,
             .base_latent = true},
        // Several workspace groups a step: accumulator rows kept for the first
        // group only, then for none (every layer rebuilds from the chain).
        Case{.arch = Arch::Llama,
             .format = "xquant-cl",
             .bits = 2,
             .latent = true,
             .remat_rows = 32,
             .acc_rows = 64},
        Case{.arch = Arch::Llama,
             .format = "xquant-cl",
             .bits = 16,
             .remat_rows = 32,
             .acc_rows = 32,
             .mha = true},
        Case{.arch = Arch::Gemma3,
             .format = "xquant-cl",
             .bits = 4,
             .latent = true,
             .remat_rows = 32},
        Case{.arch = Arch::Gemma3,
             .format = "xquant-cl-residual",
             .bits = 3,
             .remat_rows = 32,
             .acc_rows = 48}),
    case_name);

// XQuant-CL's per-channel forms: deltas per channel in blocks of G tokens (G 32 unless named;
// the long-sequence test decodes past position 128), each layer's newest < G rows in the
// window. xquant-cl-ch takes the residual stream, -normed X; the latent (one KV head) X.
INSTANTIATE_TEST_SUITE_P(
    ClChannelFormats, CudaModelTest,
    ::testing::Values(
        // X-wide, MHA: fp16 deltas (tight against the CPU), then 2 bits; both streams.
        Case{.arch = Arch::Llama, .format = "xquant-cl-ch", .bits = 16, .mha = true},
        Case{.arch = Arch::Llama, .format = "xquant-cl-ch-normed", .bits = 16, .mha = true},
        Case{.arch = Arch::Llama, .format = "xquant-cl-ch", .bits = 2, .mha = true},
        Case{.arch = Arch::Llama, .format = "xquant-cl-ch-normed", .bits = 4, .group = 8},
        Case{.arch = Arch::Llama, .format = "xquant-cl-ch", .bits = 4, .group = 16},
        // Gemma's two chains (global and sliding layers), its one-plus norm of the residual.
        Case{.arch = Arch::Gemma3, .format = "xquant-cl-ch", .bits = 4},
        Case{.arch = Arch::Gemma3, .format = "xquant-cl-ch-residual", .bits = 16},
        // The GQA latent form: deltas on each layer's basis, the X-wide base, per channel.
        Case{.arch = Arch::Llama, .format = "xquant-cl-ch-normed", .bits = 16, .latent = true},
        Case{.arch = Arch::Llama, .format = "xquant-cl-ch-normed", .bits = 2, .latent = true},
        Case{.arch = Arch::Gemma3, .format = "xquant-cl-ch-normed", .bits = 4, .latent = true},
        Case{.arch = Arch::Llama,
             .format = "xquant-cl-ch",  // "on" gives the default-named form the latent of X
             .bits = 3,
             .latent = true,
             .base_latent = true},
        // Table 4's shape, blocks of 128 (a decode fills one), mixed 16-bit and blocked layers.
        Case{.arch = Arch::Llama, .format = "xquant-cl-ch", .bits = 3, .hp = {2, 4}, .group = 128},
        Case{.arch = Arch::Llama,
             .format = "xquant-cl-ch-normed",
             .bits = 2,
             .latent = true,
             .hp = {2, 16},
             .group = 128},
        // Several workspace groups a step, accumulator rows for some of them or none.
        Case{.arch = Arch::Llama,
             .format = "xquant-cl-ch",
             .bits = 2,
             .remat_rows = 32,
             .acc_rows = 64,
             .mha = true},
        Case{.arch = Arch::Llama,
             .format = "xquant-cl-ch-normed",
             .bits = 16,
             .remat_rows = 32,
             .acc_rows = 32,
             .mha = true},
        Case{.arch = Arch::Gemma3,
             .format = "xquant-cl-ch-normed",
             .bits = 4,
             .latent = true,
             .remat_rows = 32},
        Case{.arch = Arch::Gemma3,
             .format = "xquant-cl-ch",
             .bits = 3,
             .remat_rows = 32,
             .acc_rows = 48}),
    case_name);

// The per-channel forms without the fp16 window (--cache-fp16-window 0): each layer's window
// positions read as their chain of deltas quantized per channel as one partial block, as the
// CPU's window_quantized reads them (the full block's chain below where a step fills it).
INSTANTIATE_TEST_SUITE_P(
    ClChannelQuantizedWindow, CudaModelTest,
    ::testing::Values(
        // X-wide: fp16 deltas, then 2 and 4 bits; both streams, blocks of 8 to 128.
        Case{.arch = Arch::Llama,
             .format = "xquant-cl-ch",
             .bits = 16,
             .window = false,
             .mha = true},
        Case{.arch = Arch::Llama,
             .format = "xquant-cl-ch-normed",
             .bits = 16,
             .window = false,
             .mha = true},
        Case{
            .arch = Arch::Llama, .format = "xquant-cl-ch", .bits = 2, .window = false, .mha = true},
        Case{.arch = Arch::Llama,
             .format = "xquant-cl-ch-normed",
             .bits = 4,
             .group = 8,
             .window = false},
        Case{.arch = Arch::Gemma3, .format = "xquant-cl-ch", .bits = 4, .window = false},
        // The GQA latent form, Gemma's two chains.
        Case{.arch = Arch::Llama,
             .format = "xquant-cl-ch-normed",
             .bits = 16,
             .latent = true,
             .window = false},
        Case{.arch = Arch::Llama,
             .format = "xquant-cl-ch-normed",
             .bits = 2,
             .latent = true,
             .window = false},
        Case{.arch = Arch::Gemma3,
             .format = "xquant-cl-ch-normed",
             .bits = 4,
             .latent = true,
             .window = false},
        // Table 4's shape (blocks of 128, a decode fills one), X-wide and latent.
        Case{.arch = Arch::Llama,
             .format = "xquant-cl-ch",
             .bits = 2,
             .hp = {2, 4},
             .group = 128,
             .window = false},
        Case{.arch = Arch::Llama,
             .format = "xquant-cl-ch-normed",
             .bits = 2,
             .latent = true,
             .hp = {2, 16},
             .group = 128,
             .window = false},
        // Several workspace groups a step, accumulator rows for none of them (the partial chain
        // replayed with A_prev at every layer) or some.
        Case{.arch = Arch::Llama,
             .format = "xquant-cl-ch",
             .bits = 4,
             .window = false,
             .remat_rows = 32,
             .acc_rows = 32,
             .mha = true},
        Case{.arch = Arch::Gemma3,
             .format = "xquant-cl-ch-normed",
             .bits = 2,
             .latent = true,
             .window = false,
             .remat_rows = 32,
             .acc_rows = 48}),
    case_name);

TEST(CudaModelBudget, CacheGetsWhatTheUtilizationLeaves) {
  SKIP_WITHOUT_GPU();
  const ModelConfig cfg = tiny_config(Arch::Llama);
  const MemoryWeights w = random_weights(cfg, 3, true);
  const GpuInfo gpu = probe_gpus()[0];
  EngineOptions o;
  o.device = "cuda";
  o.max_model_len = 512;
  // Just above what is in use now: a small cache, sized from the measured rest.
  const double used = static_cast<double>(gpu.total_bytes - gpu.free_bytes);
  o.gpu_memory_utilization = std::min(1.0, (used + 2.0 * (1 << 30)) / gpu.total_bytes);
  auto m = make_model(cfg, w, o);
  EXPECT_GT(m->device_cache_bytes(), 0.5 * (1 << 30));
  EXPECT_LT(m->device_cache_bytes(), 2.0 * (1 << 30));
  // A utilization below what is already in use leaves nothing: a clear error naming the flag.
  o.gpu_memory_utilization = std::max(0.001, used / gpu.total_bytes * 0.5);
  try {
    make_model(cfg, w, o);
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--gpu-memory-utilization"), std::string::npos)
        << e.what();
  }
}

// A small CUDA model's options: a cache of 16 MiB in `format` at `bits`.
EngineOptions small_cache(const std::string& format, int bits) {
  EngineOptions o;
  o.device = "cuda";
  o.gpu_cache_bytes = 16 << 20;
  o.cache.format = format;
  o.cache.bits = bits;
  return o;
}

TEST(CudaModelBudget, FormatsTheGpuDoesNotRunAreRefusedClearly) {
  SKIP_WITHOUT_GPU();
  const ModelConfig cfg = tiny_config(Arch::Llama);
  const MemoryWeights w = random_weights(cfg, 3, true);
  // Per-channel blocks need a G that tiles 16-token pages (the server takes powers of two).
  EngineOptions o = small_cache("kivi", 4);
  o.cache.group_size = 24;
  EXPECT_THROW(make_model(cfg, w, o), ConfigError);
  // Every xquant-cl form runs, the per-channel ones with their fp16 window or without.
  o.cache.latent = "auto";
  o.cache.latent_k = "auto";
  o.cache.bits = 2;
  o.cache.group_size = 32;
  for (bool window : {true, false}) {
    o.cache.fp16_window = window;
    for (const char* f : {"xquant-cl", "xquant-cl-residual", "xquant-cl-normed", "xquant-cl-ch",
                          "xquant-cl-ch-residual", "xquant-cl-ch-normed"}) {
      o.cache.format = f;
      EXPECT_NO_THROW(make_model(cfg, w, o)) << f << " fp16 window " << window;
    }
  }
}

// The windows of the per-channel formats come off the cache bytes the scheduler budgets:
// max_num_seqs x window_bytes_max() on top of the pages, as the scheduler reserves them.
TEST(CudaModelBudget, PerChannelWindowsAreBudgetedPerSequence) {
  SKIP_WITHOUT_GPU();
  const ModelConfig cfg = tiny_config(Arch::Llama);
  const MemoryWeights w = random_weights(cfg, 3, true);
  EngineOptions o = small_cache("kivi", 2);
  o.max_num_seqs = 4;
  o.cache.group_size = 128;
  auto m = make_model(cfg, w, o);
  const CacheFormat& f = m->cache_format();
  EXPECT_GT(f.window_bytes_max(), 0.0);
  const double pages = (m->device_cache_bytes() - 4 * f.window_bytes_max()) /
                       (16 * (f.layer_bytes_per_token(0) + f.layer_bytes_per_token(1)));
  EXPECT_NEAR(pages, std::round(pages), 1e-6);
  EXPECT_LE(m->device_cache_bytes(), 16 << 20);
  // Four sequences hold their windows; a fifth running at once finds none.
  std::vector<std::unique_ptr<SequenceCache>> seqs;
  std::vector<float> logits;
  for (int i = 0; i < 5; ++i) {
    seqs.push_back(f.new_sequence());
    const std::vector<int> prompt = tokens(3, i, cfg.vocab_size);
    std::vector<SeqInput> in = {{seqs.back().get(), prompt, 0, false}};
    if (i < 4)
      m->forward(in, logits);
    else
      EXPECT_THROW(m->forward(in, logits), std::logic_error);
  }
  seqs[0]->truncate(0);  // preemption gives its window back
  const std::vector<int> prompt = tokens(3, 9, cfg.vocab_size);
  std::vector<SeqInput> in = {{seqs[4].get(), prompt, 0, false}};
  EXPECT_NO_THROW(m->forward(in, logits));
}

}  // namespace
}  // namespace xq
