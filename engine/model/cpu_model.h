// CpuModel: the reference transformer (Llama/Mistral/Qwen2 and Gemma 3 blocks) in fp32 on the
// CPU; the definition the CUDA engine is checked against.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "engine/cache/cache_format.h"
#include "engine/model/layer_weights.h"
#include "engine/model/model.h"
#include "engine/model/rope_freqs.h"

namespace xq {

class CpuModel : public Model, public KvProjector {
 public:
  // Loads every weight from `src` (which may be dropped afterwards) and builds the cache format.
  CpuModel(const ModelConfig& cfg, const WeightSource& src, const CacheOptions& cache);

  const ModelConfig& config() const override { return cfg_; }
  const CacheFormat& cache_format() const override { return *format_; }
  void forward(std::span<const SeqInput> batch, std::vector<float>& logits) override;
  size_t weight_bytes() const override { return w_.bytes(); }

  void keys(int layer, const float* x, int n, const int* pos, float* k) const override;
  void values(int layer, const float* x, int n, float* v) const override;
  void norm_input(int layer, const float* residual, int n, float* x) const override;
  const float* k_weight(int layer) const override { return w_.layers.at(layer).wk.data(); }
  const float* v_weight(int layer) const override { return w_.layers.at(layer).wv.data(); }

 private:
  // Buffers of one forward call, kept between calls to avoid reallocating.
  struct Scratch {
    std::vector<float> h, x, q, k, v, attn, o, gate, up;
    std::vector<int> pos;
  };
  void embed(std::span<const SeqInput> batch, int rows);
  void attention_block(int layer, std::span<const SeqInput> batch, int rows);
  void mlp_block(int layer, int rows);
  void output_logits(std::span<const SeqInput> batch, std::vector<float>& logits);
  // Per-head RMSNorm of q or k rows (Gemma 3, Qwen 3) and RoPE at the rows' positions.
  void norm_and_rope(int layer, float* t, int rows, int heads, const std::vector<float>& norm,
                     const int* pos) const;

  ModelConfig cfg_;
  ModelWeights w_;
  ModelRopeFreqs rope_;
  std::unique_ptr<CacheFormat> format_;
  Scratch s_;
};

}  // namespace xq
