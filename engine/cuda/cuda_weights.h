// The CUDA model's weights on the device: matrices as bf16 (the matmul operands), norms and
// biases as fp32. Uploaded one layer at a time, so the host never holds more than one layer's
// fp32 copy.
#pragma once

#include <string>
#include <vector>

#include "config/model_config.h"
#include "engine/cuda/device_buffer.h"
#include "engine/weights/weight_source.h"

namespace xq::cuda {

// A matrix [rows, cols] inside a larger device allocation (not owned).
struct MatrixView {
  const bf16* p = nullptr;
  MatrixView() = default;
  MatrixView(const bf16* m) : p(m) {}                      // NOLINT: a pointer is a view
  MatrixView(const DeviceBuffer<bf16>& b) : p(b.get()) {}  // NOLINT: so is a whole buffer
  const bf16* get() const { return p; }
};

struct CudaLayer {
  // Q, K and V stacked [q_dim + 2 kv_dim, hidden], gate and up [2 intermediate, hidden]: one
  // product each instead of three and two (at decode, fewer and longer weight streams); the
  // views name each part.
  DeviceBuffer<bf16> wqkv, w_gate_up, wo, w_down;
  MatrixView wq, wk, wv, w_gate, w_up;
  // Empty buffers are absent tensors (biases, q/k norms, Gemma's extra norms).
  DeviceBuffer<float> attn_norm, mlp_norm, q_norm, k_norm, post_attn_norm, post_mlp_norm;
  DeviceBuffer<float> bq, bk, bv, bo;
  // The GQA latent (empty without): [U_k; U_v] [2 kv_dim, hidden], the row-space bases of Wk
  // and Wv that X is projected on, and Wk U_k^T, Wv U_v^T [kv_dim, kv_dim], which rebuild K and
  // V from the latents exactly (K = X Wk^T = (X U_k^T)(Wk U_k^T)^T).
  DeviceBuffer<bf16> u_cat, wk_lat, wv_lat;
  // XQuant-CL's latent form (empty without): Ukv^T [2 kv_dim, hidden], an orthonormal basis of
  // the row space of [Wk; Wv] stacked (the CPU's kv_row_space_bases).
  DeviceBuffer<bf16> u_kv;
};

struct CudaWeights {
  DeviceBuffer<bf16> embed;    // [vocab, hidden]
  DeviceBuffer<bf16> lm_head;  // [vocab, hidden]; empty when tied to embed
  DeviceBuffer<float> final_norm;
  std::vector<CudaLayer> layers;
  std::string latent_svd;  // where the latent's SVDs ran: "gpu", "host" (the fallback), "" (none)
  size_t bytes() const;
  const bf16* head() const { return lm_head.empty() ? embed.get() : lm_head.get(); }
};

// Throws WeightError (from the source) naming a missing or mis-shaped tensor, CudaError when
// the device runs out of memory.
// `with_latent`: also the GQA latent's bases and folded projections (two SVDs per layer, on the
// GPU; on the host when XQ_CUDA_HOST_SVD=1 or cuSOLVER fails). `with_kv_basis`: XQuant-CL's
// basis of [Wk; Wv] per layer (one SVD per layer, likewise).
CudaWeights upload_weights(const ModelConfig& cfg, const WeightSource& src, bool with_latent,
                           bool with_kv_basis = false);

}  // namespace xq::cuda
