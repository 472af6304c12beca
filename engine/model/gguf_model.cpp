// load_gguf_model: config from the metadata, tokenizer from tokenizer.ggml.*, and the CPU model
// built from the dequantized tensors under their Hugging Face names.
#include "engine/model/gguf_model.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "engine/model/gguf_tokenizer.h"
#include "engine/model/make_model.h"
#include "engine/weights/gguf_file.h"
#include "engine/weights/gguf_weights.h"

namespace xq {

LoadedModel load_gguf_model(const std::filesystem::path& path, const EngineOptions& opts) {
  const auto start = std::chrono::steady_clock::now();
  auto file = std::make_shared<const GgufFile>(path);
  const ModelConfig cfg = gguf_model_config(*file);
  LoadedModel out;
  out.tokenizer = gguf_tokenizer(*file, cfg);
  {
    // The model keeps fp32 copies; the mapping and the rewritten tensors go with `weights`.
    auto weights = open_gguf_weights(file);
    const double opened_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    out.model = make_model_logged(cfg, *weights, opts, opened_s);
  }
  out.default_name = path.stem().string();
  const std::string name = file->get_string("general.name").value_or(out.default_name);
  spdlog::info(
      "loaded {} ({}): GGUF v{}, {} {} layers, hidden {}, heads {}/{} (kv), vocab {}, "
      "{:.1f} MiB of weights in memory; cache format {}",
      path.string(), name, file->version(), cfg.model_type, cfg.num_layers, cfg.hidden_size,
      cfg.num_heads, cfg.num_kv_heads, cfg.vocab_size, out.model->weight_bytes() / 1048576.0,
      out.model->cache_format().name());
  return out;
}

}  // namespace xq
