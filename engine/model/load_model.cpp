#include <cblas.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "engine/cache/kv16_cache.h"
#include "engine/model/gguf_model.h"
#include "engine/model/make_model.h"
#include "engine/model/model.h"

namespace xq {
namespace {

const char* arch_name(Arch a) { return a == Arch::Gemma3 ? "gemma3" : "llama"; }

// The dtype of the embedding, as a stand-in for the checkpoint's weight dtype.
std::string weight_dtype(const WeightSource& src) {
  const TensorInfo* t = src.find("model.embed_tokens.weight");
  return t ? dtype_name(t->dtype) : "?";
}

void log_loaded(const std::filesystem::path& path, const Model& m, const std::string& dtype) {
  const ModelConfig& c = m.config();
  const CacheFormat& f = m.cache_format();
  spdlog::info(
      "loaded {}: arch {} ({}), {} layers, hidden {}, heads {}/{} (kv), vocab {}, "
      "{} weights ({:.1f} MiB in memory)",
      path.string(), arch_name(c.arch), c.model_type, c.num_layers, c.hidden_size, c.num_heads,
      c.num_kv_heads, c.vocab_size, dtype, m.weight_bytes() / 1048576.0);
  const double full = f.bytes_per_token() + f.sliding_bytes_per_token();
  const Kv16Format fp16(c);
  spdlog::info("cache format {}: {:.1f} bytes/token ({:.2f}x smaller than fp16 KV)", f.name(), full,
               (fp16.bytes_per_token() + fp16.sliding_bytes_per_token()) / full);
}

}  // namespace

LoadedModel load_model(const std::filesystem::path& path, const EngineOptions& opts) {
  if (opts.device != "cpu" && opts.device != "cuda")
    throw ConfigError("unknown device " + opts.device);
  // OpenBLAS keeps one process-wide thread count.
  if (opts.threads > 0) openblas_set_num_threads(opts.threads);
  if (path.extension() == ".gguf") return load_gguf_model(path, opts);
  if (!std::filesystem::is_directory(path)) {
    throw ConfigError("model path " + path.string() +
                      " is neither a Hugging Face directory nor a .gguf file");
  }
  const auto start = std::chrono::steady_clock::now();
  ModelConfig cfg = load_hf_config(path);
  LoadedModel out;
  out.tokenizer = load_hf_tokenizer(path);
  std::string dtype;
  {
    auto weights = open_safetensors_dir(path);
    dtype = weight_dtype(*weights);
    const double opened_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    out.model = make_model_logged(cfg, *weights, opts, opened_s);
  }  // the model holds its own copies; the mapping can go
  auto name = std::filesystem::weakly_canonical(path).filename();
  out.default_name = name.empty() ? path.string() : name.string();
  log_loaded(path, *out.model, dtype);
  return out;
}

}  // namespace xq
