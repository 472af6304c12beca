#include "engine/cuda/cuda_weights.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>

#include "engine/cuda/latent_svd.h"
#include "engine/model/layer_weights.h"
#include "kernels/cpu/parallel.h"

namespace xq::cuda {
namespace {

// v's values rounded to bf16 into out, on every core: an 8B model is 8G values, which one
// thread took ~20 s to convert.
void round_to_bf16(const std::vector<float>& v, bf16* out) {
  constexpr size_t kChunk = size_t{1} << 18;
  const size_t n = v.size(), chunks = (n + kChunk - 1) / kChunk;
  parallel_for(static_cast<int>(chunks), hardware_threads(), 1, [&](int c0, int c1) {
    for (size_t i = c0 * kChunk; i < std::min(n, c1 * kChunk); ++i)
      out[i] = __float2bfloat16_rn(v[i]);
  });
}

DeviceBuffer<bf16> to_device_bf16(const std::vector<float>& v) {
  std::vector<bf16> h(v.size());
  round_to_bf16(v, h.data());
  DeviceBuffer<bf16> d;
  d.upload(h.data(), h.size());
  return d;
}

// The matrices one after the other, as one [sum of rows, cols] matrix.
DeviceBuffer<bf16> stacked_bf16(std::initializer_list<const std::vector<float>*> parts) {
  size_t n = 0;
  for (const auto* p : parts) n += p->size();
  std::vector<bf16> h(n);
  size_t at = 0;
  for (const auto* p : parts) {
    round_to_bf16(*p, h.data() + at);
    at += p->size();
  }
  DeviceBuffer<bf16> d;
  d.upload(h.data(), h.size());
  return d;
}

DeviceBuffer<float> to_device(const std::vector<float>& v) {
  DeviceBuffer<float> d;
  if (!v.empty()) d.upload(v.data(), v.size());
  return d;
}

template <class T>
size_t total_bytes(std::initializer_list<const DeviceBuffer<T>*> list) {
  size_t n = 0;
  for (const auto* b : list) n += b->bytes();
  return n;
}

}  // namespace

size_t CudaWeights::bytes() const {
  size_t n = embed.bytes() + lm_head.bytes() + final_norm.bytes();
  for (const CudaLayer& l : layers) {
    n += total_bytes<bf16>({&l.wqkv, &l.w_gate_up, &l.wo, &l.w_down, &l.u_cat, &l.wk_lat,
                            &l.wv_lat, &l.u_kv});
    n += total_bytes<float>({&l.attn_norm, &l.mlp_norm, &l.q_norm, &l.k_norm, &l.post_attn_norm,
                             &l.post_mlp_norm, &l.bq, &l.bk, &l.bv, &l.bo});
  }
  return n;
}

namespace {

// The latent's bases of every layer's Wk and Wv (rows kv_dim), or of [Wk; Wv] (rows 2 kv_dim):
// on the GPU, or on the host when XQ_CUDA_HOST_SVD=1 or cuSOLVER fails (a warning, then the
// host for the rest of the load).
class LatentSolver {
 public:
  LatentSolver(const ModelConfig& cfg, bool on, int rows)
      : on_(on), rows_(rows), cols_(cfg.hidden_size) {
    const char* env = std::getenv("XQ_CUDA_HOST_SVD");
    on_gpu_ = on && !(env && std::string(env) == "1");
  }
  explicit operator bool() const { return on_; }
  const char* where() const { return on_ ? (on_gpu_ ? "gpu" : "host") : ""; }

  LatentSide side(const float* w) {
    if (on_gpu_) {
      try {
        if (!gpu_) gpu_ = std::make_unique<GpuLatentSvd>(rows_, cols_);
        return gpu_->solve(w);
      } catch (const CudaError& e) {
        spdlog::warn("GPU latent SVD failed ({}); computing the latent bases on the host",
                     e.what());
        on_gpu_ = false;
        gpu_.reset();
      }
    }
    return host_latent_side(w, rows_, cols_);
  }

 private:
  bool on_, on_gpu_;
  int rows_, cols_;
  std::unique_ptr<GpuLatentSvd> gpu_;
};

}  // namespace

CudaWeights upload_weights(const ModelConfig& cfg, const WeightSource& src, bool with_latent,
                           bool with_kv_basis) {
  const int64_t H = cfg.hidden_size, V = cfg.vocab_size;
  // Seconds per load phase, logged at the end: reading and dequantizing the checkpoint's tensors,
  // copying them to the device, and the GQA latent's SVDs.
  double read_s = 0, upload_s = 0, svd_s = 0;
  const auto timed = [](double& total, auto&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = f();
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
  };
  CudaWeights w;
  LatentSolver latent(cfg, with_latent, cfg.kv_dim());
  LatentSolver kv_basis(cfg, with_kv_basis, 2 * cfg.kv_dim());
  const std::vector<float> embed = timed(read_s, [&] {
    return src.load_f32("model.embed_tokens.weight", {V, H});
  });
  w.embed = timed(upload_s, [&] { return to_device_bf16(embed); });
  w.layers.reserve(cfg.num_layers);
  for (int l = 0; l < cfg.num_layers; ++l) {
    const LayerWeights L = timed(read_s, [&] { return load_layer_weights(cfg, src, l); });
    CudaLayer& d = w.layers.emplace_back();
    timed(upload_s, [&] {
      d.wqkv = stacked_bf16({&L.wq, &L.wk, &L.wv});
      d.wq = d.wqkv.get();
      d.wk = d.wq.get() + L.wq.size();
      d.wv = d.wk.get() + L.wk.size();
      d.w_gate_up = stacked_bf16({&L.w_gate, &L.w_up});
      d.w_gate = d.w_gate_up.get();
      d.w_up = d.w_gate.get() + L.w_gate.size();
      d.wo = to_device_bf16(L.wo);
      d.w_down = to_device_bf16(L.w_down);
      d.attn_norm = to_device(L.attn_norm);
      d.mlp_norm = to_device(L.mlp_norm);
      d.q_norm = to_device(L.q_norm);
      d.k_norm = to_device(L.k_norm);
      d.post_attn_norm = to_device(L.post_attn_norm);
      d.post_mlp_norm = to_device(L.post_mlp_norm);
      d.bq = to_device(L.bq);
      d.bk = to_device(L.bk);
      d.bv = to_device(L.bv);
      d.bo = to_device(L.bo);
      return 0;
    });
    if (latent) {
      LatentSide k, v;
      timed(svd_s, [&] {
        k = latent.side(L.wk.data());
        v = latent.side(L.wv.data());
        return 0;
      });
      k.basis.insert(k.basis.end(), v.basis.begin(), v.basis.end());
      timed(upload_s, [&] {
        d.u_cat = to_device_bf16(k.basis);
        d.wk_lat = to_device_bf16(k.folded);
        d.wv_lat = to_device_bf16(v.folded);
        return 0;
      });
    }
    if (kv_basis) {
      std::vector<float> wkv = L.wk;
      wkv.insert(wkv.end(), L.wv.begin(), L.wv.end());
      const LatentSide kv = timed(svd_s, [&] { return kv_basis.side(wkv.data()); });
      d.u_kv = timed(upload_s, [&] { return to_device_bf16(kv.basis); });
    }
  }
  const std::vector<float> final_norm =
      timed(read_s, [&] { return src.load_f32("model.norm.weight", {H}); });
  w.final_norm = timed(upload_s, [&] { return to_device(final_norm); });
  if (!cfg.tie_word_embeddings) {
    const std::vector<float> head = timed(read_s, [&] {
      return src.load_f32("lm_head.weight", {V, H});
    });
    w.lm_head = timed(upload_s, [&] { return to_device_bf16(head); });
  }
  w.latent_svd = latent ? latent.where() : kv_basis.where();
  spdlog::info("GPU weights: read and dequantize {:.2f}s, upload {:.2f}s{}", read_s, upload_s,
               latent || kv_basis
                   ? fmt::format(", latent bases (SVD on the {}) {:.2f}s", w.latent_svd, svd_s)
                   : std::string());
  return w;
}

}  // namespace xq::cuda
