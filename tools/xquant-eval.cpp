// xquant-eval: the accuracy table of the cache formats. `ppl` runs teacher-forced, token-by-token
// decoding of a text through every requested cache at once (one batch row per format, so the
// weights stream once per position) and prints bytes/token, compression and perplexity.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "engine/cache/cache_format.h"
#include "engine/cache/kv16_cache.h"
#include "engine/model/model.h"

namespace {

using xq::CacheOptions;

struct Run {
  std::string spec;
  CacheOptions opts;
  // The format the run's sequences come from: its own (CPU: any format over the one model), or
  // the model's (CUDA: one model per format, as the GPU cache is the model's).
  std::unique_ptr<xq::CacheFormat> own_format;
  const xq::CacheFormat* format = nullptr;
  // What the table prints, kept once the format may be gone with its model.
  std::string name;
  double bytes_per_token = 0, mean_at_full = 0, window = 0;
  double nll = 0;
  long scored = 0;
  double ppl() const { return std::exp(nll / std::max(1L, scored)); }
  void describe(int full) {
    name = format->name();
    bytes_per_token = format->bytes_per_token() + format->sliding_bytes_per_token();
    mean_at_full = format->mean_bytes_per_token(full);
    window = format->window_bytes_max();
  }
};

// "fp16", "kivi:4", "xquant:2", "xquant-cl:2@32": format[:bits][@group][+hpN][+k16xC], the
// group defaulting to --group, so one run can give each family its own group size. "+hpN": the
// first N layers at --high-precision-bits (the paper's Table 4: +hp3); "+k16xC": the K latent's
// first C channels in fp16 (Appendix B: +k16x1); "+lb": xquant-cl's base on its latent basis.
// "xquant-latent:B" is xquant with the latent forced on (K latent per channel), so one run can
// compare X and its latent whatever
// --xquant-latent says; "xquant-latent-tok:B" the same with the K latent grouped per token, as
// the GPU engine holds it. "xquant-cl-x" is xquant-cl with X-wide deltas (latent off).
CacheOptions parse_spec(const std::string& spec_in, const CacheOptions& base) {
  CacheOptions o = base;
  // The modifiers and "@G" may come in any order: "@G" goes back to the format part.
  std::string spec = spec_in.substr(0, spec_in.find('+'));
  for (size_t plus = spec.size(); plus < spec_in.size();) {
    const size_t next = std::min(spec_in.find('+', plus + 1), spec_in.size());
    std::string mod = spec_in.substr(plus + 1, next - plus - 1);
    plus = next;
    if (const auto at = mod.find('@'); at != std::string::npos) {
      spec += mod.substr(at);
      mod.resize(at);
    }
    if (mod.rfind("hp", 0) == 0) {
      o.high_precision.layers = std::stoi(mod.substr(2));
    } else if (mod == "lb") {
      o.cl_base_latent = true;
    } else if (mod.rfind("k16x", 0) == 0) {
      o.latent_k_fp16_channels = std::stoi(mod.substr(4));
    } else {
      throw std::invalid_argument("unknown modifier '+" + mod + "' in cache spec " + spec_in);
    }
  }
  const auto at = spec.find('@');
  if (at != std::string::npos) o.group_size = std::stoi(spec.substr(at + 1));
  const std::string fb = spec.substr(0, at);
  const auto colon = fb.find(':');
  o.format = fb.substr(0, colon);
  o.bits = colon == std::string::npos ? 16 : std::stoi(fb.substr(colon + 1));
  if (o.format == "xquant-latent") o.format = "xquant", o.latent = "on", o.latent_k = "channel";
  if (o.format == "xquant-latent-tok") o.format = "xquant", o.latent = "on", o.latent_k = "token";
  if (o.format == "xquant-cl-x") o.format = "xquant-cl", o.latent = "off";
  if (o.format == "fp16") o.high_precision.layers = 0;
  return o;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

double nll_of(const float* logits, int vocab, int target) {
  float mx = logits[0];
  for (int i = 1; i < vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  return std::log(sum) + mx - logits[target];
}

struct PplArgs {
  std::string model, text, caches = "fp16,kivi:4,kivi:2,xquant:4,xquant:2,xquant-cl:2";
  std::string latent = "auto", device = "cpu";
  int ctx = 2048, stride = 0, max_tokens = 0, group = 128, threads = 0;
  int hp_bits = 4, cl_base_bits = 0;
  bool fp16_window = true;
};

// bytes/token: a token's cost over every layer (the compression ratio's basis, as in the papers);
// "B/tok @ctx": its mean cost in a sequence of the model's full context, where sliding-window
// layers hold only their window (equal to bytes/token for models without such layers).
void print_table(const std::vector<Run>& runs, const xq::ModelConfig& cfg) {
  const int full = cfg.max_position_embeddings;
  const xq::Kv16Format fp16(cfg);
  const double fp16_all = fp16.bytes_per_token() + fp16.sliding_bytes_per_token();
  double base = -1;
  for (const Run& r : runs) {
    if (r.opts.format == "fp16") base = r.ppl();
  }
  if (base < 0) base = runs.front().ppl();
  const std::string at = "B/tok @" + std::to_string(full);
  std::printf("%-26s %5s %5s %6s %12s %9s %14s %12s %10s %9s %8s\n", "cache", "bits", "G", "first",
              "bytes/token", "vs fp16", at.c_str(), "window B/seq", "PPL", "dPPL", "tokens");
  for (const Run& r : runs) {
    const xq::HighPrecisionLayers& hp = r.opts.high_precision;
    const std::string first =
        hp.layers > 0 ? std::to_string(hp.layers) + "@" + std::to_string(hp.bits) : "-";
    std::printf("%-26s %5d %5d %6s %12.1f %8.2fx %14.1f %12.0f %10.4f %+9.4f %8ld\n",
                r.name.c_str(), r.opts.bits, r.opts.group_size, first.c_str(), r.bytes_per_token,
                fp16_all / r.bytes_per_token, r.mean_at_full, r.window, r.ppl(), r.ppl() - base,
                r.scored);
  }
}

// Teacher-forced decoding of `tokens` through every run's cache at once (one batch row each),
// in windows of a.ctx tokens.
void score(xq::Model& model, const xq::Tokenizer& tok, std::vector<Run*> runs,
           const std::vector<int>& tokens, const PplArgs& a) {
  const xq::ModelConfig& cfg = model.config();
  const int n = static_cast<int>(tokens.size());
  const int bos = tok.add_bos() ? tok.bos_id() : -1;
  const int text_per_window = bos >= 0 ? a.ctx - 1 : a.ctx;
  const auto t0 = std::chrono::steady_clock::now();
  long steps = 0;
  int scored_until = bos >= 0 ? 0 : 1;  // text index from which predictions count
  const int step = std::min(a.stride, text_per_window);
  for (int begin = 0; begin < n && scored_until < n; begin += step) {
    const int end = std::min(n, begin + text_per_window);
    std::vector<int> seq;
    if (bos >= 0) seq.push_back(bos);
    seq.insert(seq.end(), tokens.begin() + begin, tokens.begin() + end);
    const int offset = bos >= 0 ? begin - 1 : begin;  // seq index i holds text index offset + i
    std::vector<std::unique_ptr<xq::SequenceCache>> caches;
    for (const Run* r : runs) caches.push_back(r->format->new_sequence());
    std::vector<float> logits;
    for (int p = 0; p + 1 < static_cast<int>(seq.size()); ++p) {
      std::vector<xq::SeqInput> batch(runs.size());
      for (size_t f = 0; f < runs.size(); ++f) {
        batch[f].cache = caches[f].get();
        batch[f].tokens = std::span<const int>(seq.data() + p, 1);
        batch[f].start_pos = p;
      }
      model.forward(batch, logits);
      ++steps;
      const int target = offset + p + 1;
      if (target < scored_until) continue;
      for (size_t f = 0; f < runs.size(); ++f) {
        runs[f]->nll += nll_of(logits.data() + f * cfg.vocab_size, cfg.vocab_size, seq[p + 1]);
        runs[f]->scored++;
      }
      if (runs[0]->scored % 64 == 0) {
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::fprintf(stderr, "[%ld/%d scored, %.1f steps/s]", runs[0]->scored, n, steps / s);
        for (const Run* r : runs) std::fprintf(stderr, " %s %.3f", r->spec.c_str(), r->ppl());
        std::fprintf(stderr, "\n");
      }
    }
    scored_until = end;
    if (end == n) break;
  }
}

int run_ppl(const PplArgs& a) {
  xq::EngineOptions eo;
  eo.device = a.device;
  eo.threads = a.threads;
  eo.cache.group_size = a.group;
  eo.cache.latent = a.latent;
  eo.cache.high_precision.bits = a.hp_bits;
  eo.cache.cl_base_bits = a.cl_base_bits;
  eo.cache.fp16_window = a.fp16_window;
  eo.gpu_cache_bytes = 256.0 * (1 << 20);  // a window's worth for any format here
  std::vector<Run> runs;
  for (const std::string& spec : split(a.caches, ',')) {
    Run r;
    r.spec = spec;
    r.opts = parse_spec(spec, eo.cache);
    if (r.opts.format.rfind("xquant-cl", 0) != 0) r.opts.cl_base_bits = 0;
    runs.push_back(std::move(r));
  }
  if (runs.empty()) throw std::invalid_argument("no cache formats given");
  if (a.device == "cuda") {
    // The GPU cache is the model's own: one model per format, one after another.
    xq::ModelConfig cfg;
    for (Run& r : runs) {
      xq::EngineOptions o = eo;
      o.cache = r.opts;
      o.max_num_seqs = 1;  // one sequence: a per-channel format's fp16 windows for one only
      xq::LoadedModel lm = xq::load_model(a.model, o);
      cfg = lm.model->config();
      r.format = &lm.model->cache_format();
      r.describe(cfg.max_position_embeddings);
      std::vector<int> tokens = lm.tokenizer->encode(read_file(a.text), false);
      if (a.max_tokens > 0 && static_cast<int>(tokens.size()) > a.max_tokens)
        tokens.resize(a.max_tokens);
      score(*lm.model, *lm.tokenizer, {&r}, tokens, a);
      r.format = nullptr;
    }
    print_table(runs, cfg);
    return 0;
  }
  xq::LoadedModel lm = xq::load_model(a.model, eo);
  const xq::ModelConfig& cfg = lm.model->config();
  // The formats rebuild K/V through the loaded model; a second format needs its projector.
  const auto* proj = dynamic_cast<const xq::KvProjector*>(lm.model.get());
  if (proj == nullptr) throw std::runtime_error("this model type exposes no KvProjector");
  std::vector<Run*> all;
  for (Run& r : runs) {
    r.own_format = xq::make_cache_format(r.opts, cfg, *proj);
    r.format = r.own_format.get();
    r.describe(cfg.max_position_embeddings);
    all.push_back(&r);
  }
  std::vector<int> tokens = lm.tokenizer->encode(read_file(a.text), false);
  if (a.max_tokens > 0 && static_cast<int>(tokens.size()) > a.max_tokens) {
    tokens.resize(a.max_tokens);
  }
  std::fprintf(stderr, "%zu tokens, ctx %d, stride %d, %zu caches\n", tokens.size(), a.ctx,
               a.stride, runs.size());
  score(*lm.model, *lm.tokenizer, all, tokens, a);
  print_table(runs, cfg);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"xquant-eval: accuracy of the cache formats"};
  app.require_subcommand(1);
  PplArgs a;
  CLI::App* ppl = app.add_subcommand("ppl", "perplexity of a text under each cache format");
  ppl->add_option("--model", a.model, "Hugging Face directory or .gguf file")->required();
  ppl->add_option("--text", a.text, "UTF-8 text file")->required();
  ppl->add_option("--ctx", a.ctx, "tokens per window (BOS included)");
  ppl->add_option("--stride", a.stride,
                  "window start step (0: ctx); < ctx overlaps, scoring only new tokens");
  ppl->add_option("--max-tokens", a.max_tokens, "evaluate the first N tokens (0: all)");
  ppl->add_option("--cache", a.caches, "comma-separated format[:bits][@group] list");
  ppl->add_option("--group", a.group, "quantization group size");
  ppl->add_option("--xquant-latent", a.latent, "on|off|auto: SVD latent for GQA models");
  ppl->add_option("--high-precision-bits", a.hp_bits, "bits of the +hpN first layers");
  ppl->add_option("--xquant-cl-base-bits", a.cl_base_bits,
                  "bits of an xquant-cl chain's base (0: the format's default)");
  ppl->add_option("--cache-fp16-window", a.fp16_window,
                  "0: no fp16 window of recent tokens in any format (kivi, per-channel groups)");
  ppl->add_option("--device", a.device, "cpu|cuda");
  ppl->add_option("--threads", a.threads, "BLAS threads (0: all cores)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (a.stride == 0) a.stride = a.ctx;
    if (a.ctx < 2 || a.stride < 1 || a.stride > a.ctx) {
      throw std::invalid_argument("need ctx >= 2 and 1 <= stride <= ctx");
    }
    return run_ppl(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "xquant-eval: %s\n", e.what());
    return 1;
  }
}
