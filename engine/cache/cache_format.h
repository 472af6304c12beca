// The cache interface: how a sequence keeps its per-layer attention state (fp16 K/V, quantized
// K/V, quantized X, cross-layer deltas of X, ...) and how attention reads it back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "config/model_config.h"

namespace xq {

// One layer's attention for the new tokens of one sequence. The new tokens occupy positions
// [start_pos, start_pos + n); every earlier position is already in the cache.
struct LayerAttnInput {
  int layer = 0;
  int n = 0;
  int start_pos = 0;
  const float* x = nullptr;  // [n, hidden]: the normed layer input that Wq/Wk/Wv multiply
  // [n, hidden]: the residual stream entering the layer, before its attention-input norm
  // (x = norm_input(residual)); the pre-norm tensor XQuant-CL takes its deltas on.
  const float* residual = nullptr;
  const float* q = nullptr;  // [n, num_heads * head_dim]: projected, normed, RoPE applied
  const float* k = nullptr;  // [n, kv_dim]: projected, normed, RoPE applied (full precision)
  const float* v = nullptr;  // [n, kv_dim]
  float* out = nullptr;      // [n, num_heads * head_dim]: softmax(q k^T) v, before Wo
};

// What a format needs from the model to rebuild K and V from cached layer inputs.
class KvProjector {
 public:
  virtual ~KvProjector() = default;
  // K rows for inputs x [n, hidden] at positions pos[0..n): projection, bias, norm, RoPE.
  virtual void keys(int layer, const float* x, int n, const int* pos, float* k) const = 0;
  // V rows for inputs x [n, hidden]: projection and bias.
  virtual void values(int layer, const float* x, int n, float* v) const = 0;
  // x [n, hidden] = the layer's attention-input norm of residual [n, hidden] (Llama's RMSNorm, or
  // Gemma's with (1 + w)): what the model applies before Wq/Wk/Wv.
  virtual void norm_input(int layer, const float* residual, int n, float* x) const = 0;
  // The layer's K / V projection weight as fp32 [kv_dim, hidden], row-major (the Hugging Face
  // layout), for formats that factor it (the GQA latent takes its SVD once, when it is made).
  // nullptr when the projector cannot expose it; such formats then refuse to be made.
  virtual const float* k_weight(int layer) const { return nullptr; }
  virtual const float* v_weight(int layer) const { return nullptr; }
};

// Per-sequence state across all layers. Not thread-safe; one sequence is stepped by one thread.
class SequenceCache {
 public:
  virtual ~SequenceCache() = default;
  // Stores the layer's state for the new tokens and writes their attention output. The new
  // tokens attend to the cached past (as the format stores it) and, causally, to each other in
  // full precision.
  virtual void attend(const LayerAttnInput& in) = 0;
  // Tokens held (all layers written).
  virtual int num_tokens() const = 0;
  // Forgets every token at position >= n. Once a sliding-window layer has forgotten old rows,
  // only n = 0 (or n >= num_tokens()) works; other n throw std::logic_error (check_truncate).
  virtual void truncate(int n) = 0;
  // Bytes of cache storage this sequence holds now, by the format's own count.
  virtual size_t bytes_used() const = 0;
};

// The first `layers` layers at `bits` instead of the format's width (the paper's Table 4 keeps
// the first 3 layers at 4 bits for KIVI, XQuant and XQuant-CL alike).
struct HighPrecisionLayers {
  int layers = 0;
  int bits = 4;
  int of(int layer, int format_bits) const { return layer < layers ? bits : format_bits; }
};

struct CacheOptions {
  // fp16 | kivi | xquant | xquant-ch | xquant-cl[-ch][-residual|-normed]
  std::string format = "fp16";
  int bits = 16;
  int group_size = 32;
  std::string latent = "auto";  // on | off | auto (GQA models: cache X on the SVD basis of Wk/Wv)
  // How the K latent is grouped: channel (G tokens per channel, fp16 window of < G tokens,
  // KIVI-key style) | token (like the V latent: each token final when appended, as a paged GPU
  // cache stores it) | auto (token: measured better on Gemma 3 270M, and what the GPU runs).
  std::string latent_k = "auto";
  // The K latent's first N channels kept in fp16 outside its groups (the paper's Appendix B: the
  // top singular direction, channel 0, carries the latent's outliers).
  int latent_k_fp16_channels = 0;
  HighPrecisionLayers high_precision;
  // XQuant-CL: the width of a chain's base layer (the one the accumulator starts from); 0: the
  // high-precision layers' bits when there are some, else max(bits, 4).
  int cl_base_bits = 0;
  // XQuant-CL latent form: the base layer on its basis too (X Ukv, 2 kv_dim wide) instead of
  // X-wide; the accumulator then starts from the base's projection (still lossless).
  bool cl_base_latent = false;
  // false: no full-precision window of recent tokens. Per-channel groups then read an unfilled
  // block's tokens quantized as a partial group, KIVI's values are quantized on append, so every
  // attended token of the past goes through the quantizer (fair teacher-forced perplexity).
  bool fp16_window = true;
};

// A format's memory, per token: what the scheduler budgets and /metrics reports. Sliding-window
// layers (Gemma 3's local layers) hold only the last tokens of a sequence, so a sequence of n
// tokens holds n * bytes_per_token + min(n, sliding_tokens) * sliding_bytes_per_token, plus at
// most window_bytes_max of full-precision windows.
class CacheFormat {
 public:
  virtual ~CacheFormat() = default;
  virtual std::string name() const = 0;
  // Exact bytes one token occupies in `layer` (payload, scales, zero points; a per-channel
  // block's parameters shared by its tokens), leaving out full-precision windows.
  virtual double layer_bytes_per_token(int layer) const = 0;
  // Bytes one sequence may hold beyond the per-token bytes, at most: full-precision windows of
  // recent tokens (KIVI's residual), a per-sequence constant. 0 for formats without one.
  virtual double window_bytes_max() const { return 0.0; }
  virtual std::unique_ptr<SequenceCache> new_sequence() const = 0;
  virtual const ModelConfig& config() const = 0;

  // Bytes per token over the layers that keep every token.
  double bytes_per_token() const;
  // Bytes per token over the sliding-window layers, for the tokens they hold.
  double sliding_bytes_per_token() const;
  // Tokens a sliding-window layer holds at most between steps: the window's W - 1 tokens before
  // the next one, plus what the format's grouping keeps beyond them (a per-channel block is
  // dropped only whole). 0 without sliding layers.
  int sliding_tokens() const;
  // The most bytes a sequence of `tokens` tokens holds, window_bytes_max() left out.
  double sequence_bytes(int64_t tokens) const;
  // sequence_bytes(tokens) / tokens: a token's mean cost in a sequence that long (at a model's
  // full context, the figure /metrics reports and the compression ratios compare).
  double mean_bytes_per_token(int64_t tokens) const;

 protected:
  // Rows a per-channel grouping may hold beyond a sliding layer's window.
  virtual int sliding_slack_tokens() const { return 0; }
  // False for a format whose sliding layers keep every token (their rows share storage with the
  // other layers'): then every layer costs per token and there is no window discount.
  virtual bool forgets_outside_window() const { return true; }
};

// The fp16 K/V baseline's mean bytes per token for `cfg` in a sequence of `tokens` tokens
// (sliding layers holding their window, as any fp16 cache can): every compression ratio is
// against this.
double fp16_kv_bytes_per_token(const ModelConfig& cfg, int64_t tokens);

// The checks every quantized format shares (high-precision layers in range and not for fp16,
// the K latent's fp16 channels for xquant only, the CL base bits for xquant-cl only): the CPU's
// formats and the GPU cache (engine/cuda/gpu_cache_layout.cpp) alike. Throws ConfigError.
void check_cache_options(const CacheOptions& opts, const ModelConfig& cfg);

std::unique_ptr<CacheFormat> make_cache_format(const CacheOptions& opts, const ModelConfig& cfg,
                                               const KvProjector& projector);

}  // namespace xq
