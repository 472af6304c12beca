// XQuantCLFormat: XQuant-CL, cross-layer deltas: a chain's base layer caches its input, every
// later layer the quantized difference between its input and the running reconstruction (the
// accumulator); the input is the pre-norm residual stream or the normed X. Models with
// sliding-window layers get two chains, one through the global layers and one through the
// sliding ones (cl_chains). On GQA models the deltas are cached on each layer's basis of
// [Wk; Wv] (latent, the paper's form), 2 kv_dim wide, while the accumulator stays in X space.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/cache/cache_format.h"

namespace xq {

struct XQuantCLOptions {
  int bits = 2;     // the deltas' width: 2/3/4/8, or 16 (fp16, the diagnostic)
  int group = 128;  // values per quantization group
  // A chain base's width (the layer the accumulator starts from); 0: hp.bits with
  // high-precision layers, else max(bits, 4) (see xquant_cl_cache.cpp).
  int base_bits = 0;
  // The first hp.layers layers at hp.bits; the last of them is the (first) chain's base and the
  // ones before it are cached on their own, outside the chain (the paper's Table 4).
  HighPrecisionLayers hp;
  // Deltas on each layer's basis Ukv of [Wk; Wv] (GQA models; normed X only, since the norm of
  // a projected reconstruction is not the projection of the norm).
  bool latent = false;
  // With latent: the bases on their basis too (the accumulator starts from X_b Ukv_b Ukv_b^T,
  // still lossless since each later layer reads only its own projection of the accumulator).
  bool base_latent = false;
  // Per-channel only: false reads the window's rows through the quantizer as a partial block
  // (they stay stored as S until their block fills), so no past token is read in full precision.
  bool fp16_window = true;
  bool fold_values = true;  // V folded after the softmax; false rematerializes V
  // Deltas in per-channel groups of G tokens with an fp16 window of X ("xquant-cl-ch",
  // xquant_cl_channel.cpp) instead of per-token groups.
  bool per_channel = false;
  // Deltas on the pre-norm residual stream (LayerAttnInput::residual), K/V rebuilt from the
  // layer's norm of the reconstruction; false: deltas on the normed X itself. The format names
  // default to the stream that measured better on Gemma 3 for their grouping (see
  // cl_default_residual) and name the other with a suffix.
  bool residual = false;
};

// Measured on Gemma 3 270M (xquant_cl_cache.cpp): per-channel groups are best on the residual
// stream, per-token groups on X ("xquant-cl-ch" vs "xquant-cl-ch-normed", "xquant-cl" vs
// "xquant-cl-residual").
inline bool cl_default_residual(bool per_channel) { return per_channel; }

// The layer each layer's delta is taken against: the previous layer of its chain, -1 for a
// chain's base. Without sliding-window layers one chain runs through every layer. With them,
// the global layers form one chain and the sliding layers another, so that a sliding layer can
// forget the tokens that left its window: in one chain, the global layers' reconstruction of an
// old token would need the sliding layers' deltas of it.
// Layers before `first_chained` are bases of their own (-1) that no layer chains to.
std::vector<int> cl_chains(const ModelConfig& cfg, int first_chained = 0);

// What every sequence of one format shares: per layer, the layer its delta is taken against
// (cl_chains), its bits, and its basis (empty: rows kept X-wide). With the latent, a chain base
// that another layer chains to is X-wide unless base_latent: the accumulator starts from it.
struct ClPlan {
  std::vector<int> prev;
  std::vector<int> bits;
  std::vector<std::vector<float>> bases;
  const std::vector<float>* basis(int l) const { return bases[l].empty() ? nullptr : &bases[l]; }
  int width(int l, int hidden) const {
    return bases[l].empty() ? hidden : static_cast<int>(bases[l].size() / hidden);
  }
};

class XQuantCLFormat : public CacheFormat {
 public:
  XQuantCLFormat(const ModelConfig& cfg, const KvProjector& proj, const XQuantCLOptions& opts);
  std::string name() const override;
  double layer_bytes_per_token(int layer) const override;
  double window_bytes_max() const override;
  std::unique_ptr<SequenceCache> new_sequence() const override;
  const ModelConfig& config() const override { return cfg_; }

 protected:
  int sliding_slack_tokens() const override;

 private:
  ModelConfig cfg_;
  const KvProjector& proj_;
  XQuantCLOptions opts_;
  std::shared_ptr<const ClPlan> plan_;
};

// Bytes of one value in the per-channel variant's window of recent rows: 2 (fp16) for X, 4 (fp32)
// for the residual stream, whose values can leave fp16's range.
inline int cl_window_value_bytes(const XQuantCLOptions& o) { return o.residual ? 4 : 2; }

// The tensor a CL sequence stores for in's new tokens: the residual stream or X.
const float* cl_source(const LayerAttnInput& in, bool residual);

// The past's inputs in X space for layer l: `acc` itself (rows [0, past)) for normed-X deltas,
// else norm_input of its rows [lo, past) written into `xs` at the same row index.
const float* cl_past_inputs(const KvProjector& proj, int l, const std::vector<float>& acc, int lo,
                            int past, int hidden, bool residual, std::vector<float>& xs);

}  // namespace xq
