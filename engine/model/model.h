// Model: a loaded transformer that runs the new tokens of a batch of sequences through all
// layers, appending to each sequence's cache, and returns logits.
#pragma once

#include <filesystem>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/model_config.h"
#include "engine/cache/cache_format.h"
#include "engine/logit_summary.h"
#include "engine/tokenizer/tokenizer.h"

namespace xq {

struct SeqInput {
  SequenceCache* cache = nullptr;
  std::span<const int> tokens;  // the new tokens
  int start_pos = 0;            // position of tokens[0]; equals cache->num_tokens()
  bool all_logits = false;      // logits for every new token, else for the last one only
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;
  virtual const CacheFormat& cache_format() const = 0;
  // Appends, for each input in order, n (all_logits) or 1 rows of vocab_size logits to `logits`
  // (which is cleared first).
  virtual void forward(std::span<const SeqInput> batch, std::vector<float>& logits) = 0;
  // A model whose logits stay on its device (the GPU) also runs a step that returns a summary
  // per logits row instead of the row (one spec per row, in forward()'s order, none of the
  // inputs all_logits), and until its next step copies back the rows a draw still needs
  // (indices in that order). Only token ids and candidates cross to the host.
  virtual bool summarizes_logits() const { return false; }
  virtual void forward_summarized(std::span<const SeqInput>, std::span<const RowDrawSpec>,
                                  size_t /*listable*/, std::vector<RowSummary>&) {
    throw std::logic_error("this model returns whole rows of logits");
  }
  virtual void copy_logit_rows(std::span<const int>, std::vector<float>&) {
    throw std::logic_error("this model returns whole rows of logits");
  }
  // Bytes of weights resident for this model (for the memory budget).
  virtual size_t weight_bytes() const = 0;
  // Bytes this model set aside on its device for the cache (on a GPU: the share of device memory
  // --gpu-memory-utilization leaves after weights and workspace); 0 when the cache lives in host
  // memory, sized by --cache-memory.
  virtual double device_cache_bytes() const { return 0.0; }
};

// The rows of a batch's new tokens (in batch order) whose logits forward() returns: every row of
// an all_logits input, the last row of any other non-empty one.
std::vector<int> logit_rows(std::span<const SeqInput> batch);

struct EngineOptions {
  std::string device = "cpu";  // cpu | cuda
  CacheOptions cache;
  int threads = 0;             // 0: all cores
  // The GPU engine sizes its workspace from the scheduler's limits and takes this share of the
  // device's memory for weights, workspace and cache together.
  double gpu_memory_utilization = 0.9;
  int max_num_seqs = 64;
  int max_num_batched_tokens = 2048;
  int max_model_len = 0;  // 0: the model's max_position_embeddings
  // > 0: the GPU cache takes exactly this many bytes (it must fit what the utilization leaves)
  // instead of all of it.
  double gpu_cache_bytes = 0;
};

// A model ready to serve: weights, tokenizer and cache format.
struct LoadedModel {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Model> model;
  std::string default_name;  // the directory or file name, for /v1/models
};

// `path` is a Hugging Face directory (config.json, safetensors, tokenizer.json) or a .gguf file.
LoadedModel load_model(const std::filesystem::path& path, const EngineOptions& opts);

}  // namespace xq
