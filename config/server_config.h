// ServerConfig: every xquant-server flag, from the command line, XQ_* environment variables or a
// --config file, validated once at start.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace xq {

struct ServerConfig {
  std::string model;  // HF directory or .gguf file
  std::string host = "127.0.0.1";
  int port = 8000;                // 0: any free port (the log line names it)
  std::string device = "auto";    // cpu | cuda | auto
  std::string served_model_name;  // empty: the model's default name
  std::string cache = "fp16";     // fp16 | kivi | xquant(-ch) | xquant-cl(-ch)
  int cache_bits = 16;            // resolved from the format when not given
  int cache_group_size = 32;
  std::string xquant_latent = "auto";     // on | off | auto
  std::string xquant_latent_k = "auto";   // auto | channel | token: the K latent's grouping
  int xquant_latent_k_fp16_channels = 0;  // the K latent's first channels kept in fp16
  int cache_high_precision_layers = 0;    // the first N layers at cache_high_precision_bits
  int cache_high_precision_bits = 4;
  int xquant_cl_base_bits = 0;       // 0: the format's default (see CacheOptions::cl_base_bits)
  std::string xquant_cl_base = "x";  // x | latent: the GQA latent form's base layer
  bool cache_fp16_window = true;     // false: no full-precision window of recent tokens
  int max_num_seqs = 64;
  int max_num_batched_tokens = 2048;
  std::optional<int> max_model_len;             // unset: the model's max_position_embeddings
  size_t cache_memory_bytes = size_t{4} << 30;  // the cache budget the scheduler fills
  double gpu_memory_utilization = 0.9;  // share of GPU memory for weights, workspace and cache
  size_t gpu_cache_memory_bytes = 0;    // > 0: the GPU cache's size instead of all that is left
  std::string api_key;                  // empty: no authentication
  uint64_t seed = 0;
  int threads = 0;  // 0: all cores
  std::string log_level = "info";
  std::string log_format = "text";  // text | json (one object per line)
  size_t max_body_bytes = size_t{8} << 20;
  int http_threads = 1;  // Asio threads serving connections
  // Open connections at most; at the limit a new one takes the place of the one idle longest
  // (0: the file descriptor limit less 64).
  int max_connections = 0;
  int max_queued_requests = 0;     // requests waiting to start at most, then 503 (0: no limit)
  double shutdown_grace_s = 10.0;  // how long SIGTERM waits for running requests
  // /health fails (503) once the engine has had work waiting this long without finishing a step.
  double engine_stall_timeout_s = 120.0;
  // Tokens per streamed chunk after a choice's first (sent at once); the last chunk takes what
  // is left. Larger values cut the per-token cost of events, SSE chunks and socket writes.
  int stream_interval = 1;
  // --chat-template: the template text (read from the file, or given inline); unset: the
  // model's own.
  std::optional<std::string> chat_template;
  std::vector<std::string> allowed_origins;  // CORS; empty: off, "*": any origin
};

// What parse_server_args decided: run with `config`, or exit at once with `exit_code` after
// printing `message` (help text to stdout when exit_code is 0, an error to stderr otherwise).
struct ServerArgs {
  std::optional<ServerConfig> config;
  int exit_code = 0;
  std::string message;
  // XQ_* variables set in the environment that name no setting (a typo would otherwise be
  // silently ignored), for the log.
  std::vector<std::string> warnings;
};

// Parses argv (argv[0] is the program name). Every flag also comes from its environment variable
// (XQ_ and the flag's name: --max-num-seqs, XQ_MAX_NUM_SEQS) and from the YAML/JSON file of
// --config (XQ_CONFIG); flags win over the environment, which wins over the file. Bad values
// give exit_code 2 and a message naming the flag; --help and --print-config give exit_code 0
// and the text to print.
ServerArgs parse_server_args(int argc, const char* const* argv);

// "8MiB", "512k", "1G", "1048576" -> bytes (K/M/G are powers of 1024, as are KiB/MiB/GiB;
// KB/MB/GB are powers of 1000). Throws std::invalid_argument on anything else.
size_t parse_byte_size(std::string_view text);

}  // namespace xq
