// xquant-bench: decode step latency and cache memory per cache format, on a model directory or
// on random weights in a named model shape, at a given batch and context. Every format runs the
// same steps one after another in one process, so their times compare as ratios.
//
//   xquant-bench --shape llama2-7b --layers 8 --device cuda --batch 16 --context 2048
//                --formats fp16,xquant:4,xquant:2
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine/cache/cache_format.h"
#include "engine/model/make_model.h"
#include "engine/model/model.h"
#include "engine/sampler.h"
#include "engine/weights/weight_source.h"
#include "kernels/cpu/parallel.h"

namespace {

using namespace xq;

// Shapes of public checkpoints (config.json values), for random-weight runs.
ModelConfig shape(const std::string& name) {
  ModelConfig c;
  c.arch = Arch::Llama;
  c.model_type = "llama";
  c.rms_norm_eps = 1e-5f;
  c.max_position_embeddings = 32768;
  if (name == "llama2-7b") {
    c.vocab_size = 32000, c.hidden_size = 4096, c.intermediate_size = 11008;
    c.num_layers = 32, c.num_heads = 32, c.num_kv_heads = 32;
  } else if (name == "llama3-8b") {
    c.vocab_size = 128256, c.hidden_size = 4096, c.intermediate_size = 14336;
    c.num_layers = 32, c.num_heads = 32, c.num_kv_heads = 8, c.rope_theta = 500000.0f;
  } else if (name == "llama3.2-1b") {
    c.vocab_size = 128256, c.hidden_size = 2048, c.intermediate_size = 8192;
    c.num_layers = 16, c.num_heads = 32, c.num_kv_heads = 8, c.rope_theta = 500000.0f;
    c.tie_word_embeddings = true;
  } else {
    throw ConfigError("unknown --shape " + name + " (llama2-7b, llama3-8b, llama3.2-1b)");
  }
  c.head_dim = c.hidden_size / c.num_heads;
  return c;
}

// Random bf16 tensors made when looked up (one at a time: a 7B shape never sits in host memory
// whole). Norm weights are 1, the rest N(0, 0.02)-like.
// Random bf16 weights in a model's shape, made when first asked for. With `keep`, every tensor
// made stays for the next model (the formats of one run share one set of weights and make them
// once: an 8B shape is 16 GB); without, only the last one is held.
class RandomWeights : public WeightSource {
 public:
  RandomWeights(const ModelConfig& c, bool keep) : keep_(keep) {
    const int64_t H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim();
    shapes_["model.embed_tokens.weight"] = {c.vocab_size, H};
    shapes_["model.norm.weight"] = {H};
    if (!c.tie_word_embeddings) shapes_["lm_head.weight"] = {c.vocab_size, H};
    for (int l = 0; l < c.num_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      shapes_[p + "input_layernorm.weight"] = {H};
      shapes_[p + "post_attention_layernorm.weight"] = {H};
      shapes_[p + "self_attn.q_proj.weight"] = {Q, H};
      shapes_[p + "self_attn.k_proj.weight"] = {KV, H};
      shapes_[p + "self_attn.v_proj.weight"] = {KV, H};
      shapes_[p + "self_attn.o_proj.weight"] = {H, Q};
      shapes_[p + "mlp.gate_proj.weight"] = {I, H};
      shapes_[p + "mlp.up_proj.weight"] = {I, H};
      shapes_[p + "mlp.down_proj.weight"] = {H, I};
    }
  }
  const TensorInfo* find(const std::string& name) const override {
    auto it = shapes_.find(name);
    if (it == shapes_.end()) return nullptr;
    if (auto kept = made_.find(name); kept != made_.end()) return &kept->second.info;
    if (!keep_) made_.clear();
    Made& m = made_[name];
    TensorInfo& info = m.info;
    std::vector<uint16_t>& data = m.data;
    info.name = name;
    info.dtype = DType::BF16;
    info.shape = it->second;
    info.file = "random";
    const int64_t n = info.numel();
    data.resize(n);
    const bool norm = name.find("norm") != std::string::npos;
    const uint64_t seed = std::hash<std::string>{}(name);
    // Blocks of 64k values, each from its own stream, on every core: an 8B shape is 16 GB.
    constexpr int64_t kBlock = int64_t{1} << 16;
    const int blocks = static_cast<int>((n + kBlock - 1) / kBlock);
    parallel_for(blocks, hardware_threads(), 1, [&](int b0, int b1) {
      for (int b = b0; b < b1; ++b) {
        uint64_t s = (seed ^ (static_cast<uint64_t>(b) * 0x9e3779b97f4a7c15ull)) | 1;
        for (int64_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) {
          float v = 1.0f;
          if (!norm) {  // a sum of uniforms: roughly normal, std 0.02
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            const float a = static_cast<float>(s & 0xffff) / 65536.0f;
            const float c = static_cast<float>((s >> 16) & 0xffff) / 65536.0f;
            v = (a + c - 1.0f) * 0.049f;
          }
          uint32_t u;
          std::memcpy(&u, &v, 4);
          data[i] = static_cast<uint16_t>(u >> 16);
        }
      }
    });
    info.data = reinterpret_cast<const uint8_t*>(data.data());
    info.nbytes = data.size() * 2;
    return &info;
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (const auto& [n, s] : shapes_) out.push_back(n);
    return out;
  }

 private:
  struct Made {
    TensorInfo info;
    std::vector<uint16_t> data;
  };
  std::map<std::string, std::vector<int64_t>> shapes_;
  bool keep_;
  mutable std::map<std::string, Made> made_;
};

CacheOptions parse_format(const std::string& spec, int group) {
  CacheOptions o;
  const auto colon = spec.find(':');
  o.format = spec.substr(0, colon);
  o.bits = colon == std::string::npos ? 16 : std::stoi(spec.substr(colon + 1));
  o.group_size = group;
  if (o.format == "xquant-x") o.format = "xquant", o.latent = "off";  // X even on GQA models
  return o;
}

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

struct Row {
  std::string format;
  double bytes_per_token = 0, prefill_s = 0, step_ms = 0, tokens_per_s = 0;
  double warm_prefill_ms = 0;  // one fresh sequence's prompt, the model warm (median of 3)
  double step_bytes = 0;   // weights + the cache read by one decode step
  double remat_flops = 0;  // K rebuilt from the cache per step (2 * in * out per token and layer)
};

// The width of the K rebuild's input: the latent (kv_dim) or X (hidden).
double remat_flops_per_token(const ModelConfig& c, const std::string& format) {
  if (format.rfind("fp16", 0) == 0 || format.rfind("kivi", 0) == 0) return 0.0;
  const double in = format.find("latent") != std::string::npos ? c.kv_dim() : c.hidden_size;
  return 2.0 * in * c.kv_dim() * c.num_layers;
}

Row bench(const ModelConfig& cfg, const WeightSource& src, EngineOptions opts, int batch,
          int context, int steps, int prefill_tokens, bool full_logits) {
  auto model = make_model(cfg, src, opts);
  Row r;
  r.format = model->cache_format().name();
  r.bytes_per_token = model->cache_format().bytes_per_token();
  std::vector<std::unique_ptr<SequenceCache>> caches;
  std::vector<std::vector<int>> prompts(batch);
  for (int b = 0; b < batch; ++b) {
    caches.push_back(model->cache_format().new_sequence());
    for (int i = 0; i < context; ++i)
      prompts[b].push_back((b * 7919 + i * 104729) % cfg.vocab_size);
  }
  std::vector<float> logits;
  // Prefill in chunks of the scheduler's token budget, one sequence at a time.
  double t0 = now_s();
  const int chunk = opts.max_num_batched_tokens;
  for (int b = 0; b < batch; ++b) {
    for (int c = 0; c < context; c += chunk) {
      const int n = std::min(chunk, context - c);
      SeqInput in{caches[b].get(), std::span<const int>(prompts[b]).subspan(c, n), c, false};
      model->forward(std::span<const SeqInput>(&in, 1), logits);
    }
  }
  r.prefill_s = now_s() - t0;
  std::vector<int> next(batch, 1);
  std::vector<SeqInput> step(batch);
  // A step as the server runs it: the model, then greedy draws (from the row summaries where
  // the model keeps its logits on the device, else from whole rows on the host).
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  std::vector<Sampler> samplers(batch, Sampler(greedy, 1));
  const bool summarized = model->summarizes_logits() && !full_logits;
  std::vector<RowDrawSpec> specs(batch);
  std::vector<RowSummary> summaries;
  std::vector<SampleTask> tasks(batch);
  auto decode = [&](int pos) {
    for (int b = 0; b < batch; ++b)
      step[b] = {caches[b].get(), std::span<const int>(&next[b], 1), pos, false};
    if (summarized) {
      model->forward_summarized(step, specs, cfg.vocab_size, summaries);
      for (int b = 0; b < batch; ++b) next[b] = *samplers[b].sample_summary(summaries[b], cfg.vocab_size);
    } else {
      model->forward(step, logits);
      for (int b = 0; b < batch; ++b) {
        tasks[b].sampler = &samplers[b];
        tasks[b].logits = std::span<const float>(logits).subspan(
            static_cast<size_t>(b) * cfg.vocab_size, cfg.vocab_size);
      }
      sample_batch(tasks, 0);
      for (int b = 0; b < batch; ++b) next[b] = tasks[b].token;
    }
  };
  const int warm = 3;
  for (int s = 0; s < warm; ++s) decode(context + s);
  std::vector<double> times;
  for (int s = 0; s < steps; ++s) {
    t0 = now_s();
    decode(context + warm + s);
    times.push_back(now_s() - t0);
  }
  std::sort(times.begin(), times.end());
  r.step_ms = times[times.size() / 2] * 1e3;
  r.tokens_per_s = batch / (r.step_ms / 1e3);
  const double cached = static_cast<double>(batch) * (context + warm + steps / 2);
  r.step_bytes = static_cast<double>(model->weight_bytes()) + r.bytes_per_token * cached;
  r.remat_flops = remat_flops_per_token(cfg, r.format) * cached;
  // The first prefill above also pays for the first allocations and cuBLAS's set-up: prompt
  // throughput is timed again on a warm model, one fresh sequence at a time (llama-bench's pp).
  caches.clear();
  std::vector<int> prompt(prefill_tokens);
  for (int i = 0; i < prefill_tokens; ++i) prompt[i] = (i * 7727 + 13) % cfg.vocab_size;
  std::vector<double> prefills;
  for (int rep = 0; rep < 3 && prefill_tokens > 0; ++rep) {
    auto cache = model->cache_format().new_sequence();
    t0 = now_s();
    for (int c = 0; c < prefill_tokens; c += chunk) {
      const int n = std::min(chunk, prefill_tokens - c);
      SeqInput in{cache.get(), std::span<const int>(prompt).subspan(c, n), c, false};
      model->forward(std::span<const SeqInput>(&in, 1), logits);
    }
    prefills.push_back(now_s() - t0);
  }
  std::sort(prefills.begin(), prefills.end());
  if (!prefills.empty()) r.warm_prefill_ms = prefills[prefills.size() / 2] * 1e3;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"xquant-bench: decode step latency and memory per cache format"};
  std::string model_dir, shape_name = "llama2-7b", device = "cuda", formats = "fp16,xquant:4";
  int layers = 0, batch = 16, context = 2048, steps = 20, group = 32, chunk = 2048;
  int prefill_tokens = 512;
  bool full_logits = false;
  app.add_option("--model", model_dir, "Hugging Face model directory (else --shape)");
  app.add_option("--shape", shape_name, "Random weights in this shape")->capture_default_str();
  app.add_option("--layers", layers, "Keep only this many layers (0: all)");
  app.add_option("--device", device, "cpu or cuda")->capture_default_str();
  app.add_option("--formats", formats,
                 "Comma-separated format[:bits] (xquant: the GQA latent where it is smaller; "
                 "xquant-x: X always)")
      ->capture_default_str();
  app.add_option("--batch", batch, "Sequences decoding together")->capture_default_str();
  app.add_option("--context", context, "Tokens cached per sequence")->capture_default_str();
  app.add_flag("--full-logits", full_logits,
               "Copy every logits row to the host and draw there, instead of drawing from the "
               "row summaries the GPU returns");
  app.add_option("--steps", steps, "Timed decode steps (median reported)")->capture_default_str();
  app.add_option("--group", group, "Quantization group size")->capture_default_str();
  app.add_option("--chunk", chunk, "Prefill chunk (tokens per step)")->capture_default_str();
  app.add_option("--prefill", prefill_tokens,
                 "Prompt tokens of the warm prefill timing (one sequence; 0: none)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    ModelConfig cfg;
    std::unique_ptr<WeightSource> src;
    if (!model_dir.empty()) {
      cfg = load_hf_config(model_dir);
      src = open_safetensors_dir(model_dir);
    } else {
      cfg = shape(shape_name);
    }
    if (layers > 0 && layers < cfg.num_layers) cfg.num_layers = layers;
    if (!src) src = std::make_unique<RandomWeights>(cfg, formats.find(',') != std::string::npos);
    std::printf("model %s: %d layers, hidden %d, heads %d/%d, batch %d, context %d, %s\n",
                model_dir.empty() ? shape_name.c_str() : model_dir.c_str(), cfg.num_layers,
                cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, batch, context, device.c_str());
    std::vector<Row> rows;
    std::stringstream ss(formats);
    for (std::string f; std::getline(ss, f, ',');) {
      EngineOptions o;
      o.device = device;
      o.cache = parse_format(f, group);
      o.max_num_seqs = batch;
      o.max_num_batched_tokens = std::max(chunk, batch);
      o.max_model_len = std::max(context + steps + 16, prefill_tokens + 16);
      rows.push_back(bench(cfg, *src, o, batch, context, steps, prefill_tokens, full_logits));
      const Row& r = rows.back();
      std::printf("  %-10s prefill %.2fs (first, cold), decode step %.2f ms\n", r.format.c_str(),
                  r.prefill_s, r.step_ms);
      if (r.warm_prefill_ms > 0)
        std::printf("  %-10s prefill %d tokens (warm, median of 3): %.2f ms = %.0f tok/s\n",
                    r.format.c_str(), prefill_tokens, r.warm_prefill_ms,
                    prefill_tokens / (r.warm_prefill_ms / 1e3));
      std::fflush(stdout);
    }
    std::printf(
        "\n| format | bytes/token | vs first | decode step ms | vs first | tokens/s | GB read/step "
        "| TB/s | remat TFLOP/step | remat TFLOP/s |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
    for (const Row& r : rows) {
      const double s = r.step_ms / 1e3;
      std::printf(
          "| %s | %.0f | %.2fx smaller | %.2f | %.2fx | %.0f | %.2f | %.2f | %.3f | %.0f |\n",
          r.format.c_str(), r.bytes_per_token, rows[0].bytes_per_token / r.bytes_per_token,
          r.step_ms, r.step_ms / rows[0].step_ms, r.tokens_per_s, r.step_bytes / 1e9,
          r.step_bytes / s / 1e12, r.remat_flops / 1e12, r.remat_flops / s / 1e12);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "xquant-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
