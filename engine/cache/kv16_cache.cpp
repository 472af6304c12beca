#include "engine/cache/kv16_cache.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "engine/cache/erase_front.h"
#include "engine/cache/layer_attention.h"
#include "engine/cache/thread_scratch.h"
#include "kernels/cpu/half.h"

namespace xq {
namespace {

// K and V of every layer as fp16 rows [tokens, kv_dim]; a sliding-window layer keeps only the
// rows the next token can see, from first_[layer] on.
class Kv16Sequence : public SequenceCache {
 public:
  explicit Kv16Sequence(const ModelConfig& cfg)
      : cfg_(cfg),
        k_(cfg.num_layers),
        v_(cfg.num_layers),
        tokens_(cfg.num_layers, 0),
        first_(cfg.num_layers, 0) {}

  void attend(const LayerAttnInput& in) override {
    AttentionScratch& s = thread_scratch();
    const int kv_dim = cfg_.kv_dim();
    const int past = tokens_.at(in.layer);
    if (in.start_pos != past) {
      throw std::invalid_argument("fp16 cache: layer " + std::to_string(in.layer) + " holds " +
                                  std::to_string(past) + " tokens, input starts at " +
                                  std::to_string(in.start_pos));
    }
    // The visible past converted to fp32 (a sliding layer's window only), followed by the new
    // tokens' own full-precision rows.
    const int first = window_start(cfg_, in.layer, in.start_pos);
    const size_t old_rows = static_cast<size_t>(past - first);
    const size_t rows = old_rows + in.n;
    s.k.resize(rows * kv_dim);
    s.v.resize(rows * kv_dim);
    const size_t skip = static_cast<size_t>(first - first_[in.layer]) * kv_dim;
    halves_to_floats(k_[in.layer].data() + skip, s.k.data(), old_rows * kv_dim);
    halves_to_floats(v_[in.layer].data() + skip, s.v.data(), old_rows * kv_dim);
    std::copy(in.k, in.k + static_cast<size_t>(in.n) * kv_dim, s.k.begin() + old_rows * kv_dim);
    std::copy(in.v, in.v + static_cast<size_t>(in.n) * kv_dim, s.v.begin() + old_rows * kv_dim);
    causal_attention(cfg_, in.layer, in.q, in.n, in.start_pos, s.k.data(), s.v.data(), in.out,
                     first);

    auto& ks = k_[in.layer];
    auto& vs = v_[in.layer];
    const size_t held = static_cast<size_t>(past - first_[in.layer]);
    ks.resize((held + in.n) * kv_dim);
    vs.resize((held + in.n) * kv_dim);
    floats_to_halves(in.k, ks.data() + held * kv_dim, static_cast<size_t>(in.n) * kv_dim);
    floats_to_halves(in.v, vs.data() + held * kv_dim, static_cast<size_t>(in.n) * kv_dim);
    tokens_[in.layer] = past + in.n;
    // Rows the next token cannot see are never read again.
    const int keep = window_start(cfg_, in.layer, past + in.n);
    if (keep > first_[in.layer]) {
      const size_t drop = static_cast<size_t>(keep - first_[in.layer]) * kv_dim;
      erase_front(ks, drop);
      erase_front(vs, drop);
      first_[in.layer] = keep;
    }
  }

  int num_tokens() const override { return tokens_.back(); }

  void truncate(int n) override {
    check_truncate(cfg_, n, num_tokens());
    const size_t kv_dim = cfg_.kv_dim();
    for (int l = 0; l < cfg_.num_layers; ++l) {
      if (tokens_[l] <= n) continue;
      if (n == 0) first_[l] = 0;
      if (n < first_[l]) throw std::out_of_range("fp16 cache: truncating into dropped rows");
      tokens_[l] = n;
      k_[l].resize((n - first_[l]) * kv_dim);
      v_[l].resize((n - first_[l]) * kv_dim);
    }
  }

  size_t bytes_used() const override {
    size_t b = 0;
    for (int l = 0; l < cfg_.num_layers; ++l) b += (k_[l].size() + v_[l].size()) * 2;
    return b;
  }

 private:
  ModelConfig cfg_;  // a copy, so a sequence does not depend on its format staying alive
  std::vector<std::vector<uint16_t>> k_, v_;
  std::vector<int> tokens_;
  std::vector<int> first_;  // per layer: rows before it were dropped (sliding layers)
};

}  // namespace

std::unique_ptr<SequenceCache> Kv16Format::new_sequence() const {
  return std::make_unique<Kv16Sequence>(cfg_);
}

}  // namespace xq
