// GgufWeightSource: the tensors of a GGUF file renamed to Hugging Face names, with llama.cpp's
// conversion-time changes undone so the CPU model sees exactly what a safetensors checkpoint has.
#include "engine/weights/gguf_weights.h"

#include <cstring>
#include <deque>
#include <string_view>

namespace xq {
namespace {

struct NamePair {
  std::string_view gguf;
  std::string_view hf;
};

// Per-layer tensors shared by the architectures (after "blk.N." / "model.layers.N.").
constexpr NamePair kLayerNames[] = {
    {"attn_q", "self_attn.q_proj"},      {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},      {"attn_output", "self_attn.o_proj"},
    {"attn_q_norm", "self_attn.q_norm"}, {"attn_k_norm", "self_attn.k_norm"},
    {"attn_norm", "input_layernorm"},    {"ffn_gate", "mlp.gate_proj"},
    {"ffn_up", "mlp.up_proj"},           {"ffn_down", "mlp.down_proj"},
};
// Llama-style blocks have one norm before the MLP; Gemma 3 has four norms per block.
constexpr NamePair kLlamaLayerNorms[] = {{"ffn_norm", "post_attention_layernorm"}};
constexpr NamePair kGemma3LayerNorms[] = {
    {"post_attention_norm", "post_attention_layernorm"},
    {"ffn_norm", "pre_feedforward_layernorm"},
    {"post_ffw_norm", "post_feedforward_layernorm"},
};
constexpr NamePair kGlobalNames[] = {
    {"token_embd", "model.embed_tokens"},
    {"output_norm", "model.norm"},
    {"output", "lm_head"},
};

bool is_supported_arch(const std::string& arch) {
  return arch == "llama" || arch == "qwen2" || arch == "qwen3" || arch == "gemma3";
}

std::string map_base(const std::string& arch, std::string_view base) {
  for (const NamePair& p : kGlobalNames) {
    if (base == p.gguf) return std::string(p.hf);
  }
  if (base.substr(0, 4) != "blk.") return {};
  const size_t dot = base.find('.', 4);
  if (dot == std::string_view::npos || dot == 4) return {};
  std::string_view layer = base.substr(4, dot - 4);
  for (char c : layer) {
    if (c < '0' || c > '9') return {};
  }
  std::string_view rest = base.substr(dot + 1);
  const std::string prefix = "model.layers." + std::string(layer) + ".";
  for (const NamePair& p : kLayerNames) {
    if (rest == p.gguf) return prefix + std::string(p.hf);
  }
  if (arch == "gemma3") {
    for (const NamePair& p : kGemma3LayerNorms) {
      if (rest == p.gguf) return prefix + std::string(p.hf);
    }
  } else {
    for (const NamePair& p : kLlamaLayerNorms) {
      if (rest == p.gguf) return prefix + std::string(p.hf);
    }
  }
  return {};
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

class GgufWeightSource : public TensorTable {
 public:
  explicit GgufWeightSource(std::shared_ptr<const GgufFile> file) : file_(std::move(file)) {
    const std::string path = file_->path().string();
    arch_ = file_->require_string("general.architecture");
    if (!is_supported_arch(arch_)) {
      throw WeightError(path + ": architecture " + arch_ +
                        " is not supported (llama, qwen2, qwen3 and gemma3 are)");
    }
    for (const GgufTensor& g : file_->tensors()) {
      std::optional<DType> dt = dtype_from_ggml(g.type);
      if (!dt) {
        throw WeightError(path + ": tensor " + g.name + " has type " + ggml_type_name(g.type) +
                          ", which this build cannot dequantize");
      }
      TensorInfo t;
      t.name = gguf_to_hf_name(arch_, g.name);
      t.dtype = *dt;
      t.shape = g.hf_shape();
      t.data = g.data;
      t.nbytes = g.nbytes;
      t.file = path;
      if (arch_ == "gemma3" && ends_with(g.name, "norm.weight")) unshift_norm(t);
      if (arch_ == "llama") unpermute_qk(g.name, t);
      if (insert(std::move(t)) != nullptr) {
        throw WeightError(path + ": two tensors map to " + gguf_to_hf_name(arch_, g.name));
      }
    }
  }

  std::string describe() const override { return file_->path().string(); }

 private:
  // llama.cpp's Gemma converters store RMSNorm weights as (1 + w) so that llama.cpp can apply a
  // plain x * w (convert_hf_to_gguf.py, Gemma3Model: norm_shift = 1.0 for every "norm.weight",
  // q/k norms included). Hugging Face's Gemma3RMSNorm computes x * (1 + w) from the raw w, which
  // is what the CPU model implements, so subtract the 1 again.
  void unshift_norm(TensorInfo& t) {
    std::vector<float> w(static_cast<size_t>(t.numel()));
    convert_to_f32(t, w.data());
    for (float& v : w) v -= 1.0f;
    std::vector<uint8_t>& bytes = owned_.emplace_back(w.size() * sizeof(float));
    std::memcpy(bytes.data(), w.data(), bytes.size());
    t.dtype = DType::F32;
    t.data = bytes.data();
    t.nbytes = bytes.size();
  }

  // llama.cpp's converter permutes the rows of llama-arch Q and K projections so that each
  // head's rotary pairs (i, i + d/2) become adjacent rows (2i, 2i + 1), the layout of its
  // interleaved RoPE. HF's rotate-half RoPE needs the original order back: HF row
  // h*d + s*d/2 + i is GGUF row h*d + 2i + s. Quantized blocks never span rows, so the rows
  // can be moved as raw bytes.
  void unpermute_qk(const std::string& gguf_name, TensorInfo& t) {
    const bool q = ends_with(gguf_name, ".attn_q.weight") || ends_with(gguf_name, ".attn_q.bias");
    const bool k = ends_with(gguf_name, ".attn_k.weight") || ends_with(gguf_name, ".attn_k.bias");
    if (!q && !k) return;
    const std::string path = file_->path().string();
    const int64_t heads = q ? file_->require_int("llama.attention.head_count")
                            : file_->get_int("llama.attention.head_count_kv")
                                  .value_or(file_->require_int("llama.attention.head_count"));
    const int64_t rows = t.shape[0];
    if (heads <= 0 || rows % heads != 0 || (rows / heads) % 2 != 0) {
      throw WeightError(path + ": tensor " + gguf_name + " has " + std::to_string(rows) +
                        " rows, which do not split into " + std::to_string(heads) +
                        " heads of even size");
    }
    const size_t row_bytes = t.nbytes / static_cast<size_t>(rows);
    const int64_t d = rows / heads;
    std::vector<uint8_t>& bytes = owned_.emplace_back(t.nbytes);
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t s = 0; s < 2; ++s) {
        for (int64_t i = 0; i < d / 2; ++i) {
          const int64_t hf_row = h * d + s * (d / 2) + i;
          const int64_t gguf_row = h * d + 2 * i + s;
          std::memcpy(bytes.data() + hf_row * row_bytes, t.data + gguf_row * row_bytes, row_bytes);
        }
      }
    }
    t.data = bytes.data();
  }

  std::shared_ptr<const GgufFile> file_;
  std::string arch_;
  std::deque<std::vector<uint8_t>> owned_;  // deque: growing it never moves the buffers
};

}  // namespace

std::string gguf_to_hf_name(const std::string& arch, const std::string& gguf_name) {
  for (std::string_view suffix : {".weight", ".bias"}) {
    if (!ends_with(gguf_name, suffix)) continue;
    std::string_view base(gguf_name.data(), gguf_name.size() - suffix.size());
    std::string hf = map_base(arch, base);
    if (!hf.empty()) return hf + std::string(suffix);
  }
  return gguf_name;
}

std::unique_ptr<WeightSource> open_gguf_weights(std::shared_ptr<const GgufFile> file) {
  return std::make_unique<GgufWeightSource>(std::move(file));
}

}  // namespace xq
