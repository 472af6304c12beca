// The cache interface: how a sequence keeps its per-layer attention state (fp16 K/V, quantized
// K/V, quantized X, cross-layer deltas of X, ...) and how attention reads it back.
#pragma once

#include <cstddef>
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
  // Forgets every token at position >= n.
  virtual void truncate(int n) = 0;
  // Bytes of cache storage this sequence holds now, by the format's own count.
  virtual size_t bytes_used() const = 0;
};

struct CacheOptions {
  // fp16 | kivi | xquant | xquant-ch | xquant-cl[-ch][-residual|-normed]
  std::string format = "fp16";
  int bits = 16;
  int group_size = 32;
  std::string latent = "auto";  // on | off | auto (GQA models: cache X on the SVD basis of Wk/Wv)
};

class CacheFormat {
 public:
  virtual ~CacheFormat() = default;
  virtual std::string name() const = 0;
  // Exact bytes one token occupies across all layers (payload, scales, zero points, amortized
  // full-precision windows), the unit of the scheduler's memory budget.
  virtual double bytes_per_token() const = 0;
  // Bytes one sequence may hold beyond num_tokens() * bytes_per_token(), at most: full-precision
  // windows of recent tokens (KIVI's residual), a per-sequence constant rather than a per-token
  // cost. 0 for formats without one.
  virtual double window_bytes_max() const { return 0.0; }
  virtual std::unique_ptr<SequenceCache> new_sequence() const = 0;
};

// The fp16 K/V baseline's bytes per token for `cfg`: every compression ratio is against this.
double fp16_kv_bytes_per_token(const ModelConfig& cfg);

std::unique_ptr<CacheFormat> make_cache_format(const CacheOptions& opts, const ModelConfig& cfg,
                                               const KvProjector& projector);

}  // namespace xq
