// XQuantFormat: caches each layer's normed input X quantized (or, for GQA models, X on the SVD
// latent of Wk/Wv) and rematerializes K (and V, or folds Wv after the softmax) at each step.
#pragma once

#include <memory>
#include <string>

#include "engine/cache/cache_format.h"
#include "engine/cache/xquant_latent.h"

namespace xq {

struct XQuantOptions {
  int bits = 4;         // 2/3/4/8, or 16: X in fp16 unquantized (the diagnostic)
  int group = 128;      // values per quantization group
  bool latent = false;  // cache X U_k, X U_v instead of X
  // The K latent in per-token groups like the V latent (no fp16 window) instead of per-channel
  // blocks: the layout a paged GPU cache holds. Only with latent.
  bool latent_k_per_token = false;
  // X in per-channel groups of G tokens (KIVI-key style, fp16 window of < G tokens) instead of
  // per-token groups: the other grouping axis, to compare on real models.
  bool x_per_channel = false;
  bool fold_values = true;  // V folded after the softmax (exact); false rematerializes V
  HighPrecisionLayers hp;   // the first layers at other bits
  int k_fp16_channels = 0;  // the K latent's first channels kept in fp16 (only with latent)
  bool fp16_window = true;  // false: per-channel blocks read their unfilled block quantized
};

class XQuantFormat : public CacheFormat {
 public:
  // Throws ConfigError on bad bits/group, or when a latent is asked of a model without Wk/Wv.
  XQuantFormat(const ModelConfig& cfg, const KvProjector& proj, const XQuantOptions& opts);
  std::string name() const override;
  double layer_bytes_per_token(int layer) const override;
  double window_bytes_max() const override;
  std::unique_ptr<SequenceCache> new_sequence() const override;
  const ModelConfig& config() const override { return cfg_; }

 protected:
  int sliding_slack_tokens() const override;

 private:
  bool channel_blocks() const;

  ModelConfig cfg_;
  const KvProjector& proj_;
  XQuantOptions opts_;
  std::shared_ptr<const LatentBasis> basis_;  // shared by every sequence; null without latent
};

// "auto" turns the latent on when the two latents together are narrower than X and the
// projector exposes Wk/Wv; "on" insists (and the format throws without them).
bool resolve_latent(const std::string& mode, const ModelConfig& cfg, const KvProjector& proj);

// CacheOptions.latent_k: "token" and "auto" -> true; "channel" -> false.
// Throws ConfigError on anything else.
bool resolve_latent_k_per_token(const std::string& mode);

}  // namespace xq
