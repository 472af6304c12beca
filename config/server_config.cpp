#include "config/server_config.h"

#include <unistd.h>  // environ

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <tuple>

#include "config/config_file.h"

namespace xq {
namespace {

// A value CLI11 accepted syntactically but that makes no sense together with the others.
struct BadFlag : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void check_cache(ServerConfig& c, bool bits_given) {
  if (c.cache == "fp16") {
    if (bits_given && c.cache_bits != 16)
      throw BadFlag("--cache-bits " + std::to_string(c.cache_bits) +
                    " does not apply to --cache fp16 (it is always 16)");
    c.cache_bits = 16;
    return;
  }
  if (!bits_given) c.cache_bits = c.cache.rfind("xquant-cl", 0) == 0 ? 2 : 4;
  if (c.cache_bits < 2 || c.cache_bits > 8)
    throw BadFlag("--cache-bits must be between 2 and 8 for --cache " + c.cache + ", got " +
                  std::to_string(c.cache_bits));
}

bool quant_bits(int b) { return b == 2 || b == 3 || b == 4 || b == 8; }

// The paper's settings (high-precision first layers, the K latent's fp16 channels, the CL base
// width): each only where its format has the part it changes.
void check_paper_settings(const ServerConfig& c) {
  const bool cl = c.cache.rfind("xquant-cl", 0) == 0;
  if (c.cache_high_precision_layers < 0)
    throw BadFlag("--cache-high-precision-layers must be >= 0, got " +
                  std::to_string(c.cache_high_precision_layers));
  if (c.cache_high_precision_layers > 0 && c.cache == "fp16")
    throw BadFlag("--cache-high-precision-layers does not apply to --cache fp16");
  if (!quant_bits(c.cache_high_precision_bits))
    throw BadFlag("--cache-high-precision-bits must be 2, 3, 4 or 8, got " +
                  std::to_string(c.cache_high_precision_bits));
  if (c.xquant_latent_k_fp16_channels < 0)
    throw BadFlag("--xquant-latent-k-fp16-channels must be >= 0, got " +
                  std::to_string(c.xquant_latent_k_fp16_channels));
  if (c.xquant_latent_k_fp16_channels > 0 && (c.cache != "xquant" || c.xquant_latent == "off"))
    throw BadFlag("--xquant-latent-k-fp16-channels applies to --cache xquant with its GQA latent");
  if (c.xquant_cl_base_bits != 0 &&
      !(quant_bits(c.xquant_cl_base_bits) || c.xquant_cl_base_bits == 16))
    throw BadFlag("--xquant-cl-base-bits must be 2, 3, 4, 8 or 16 (0: the default), got " +
                  std::to_string(c.xquant_cl_base_bits));
  if (c.xquant_cl_base_bits != 0 && !cl)
    throw BadFlag("--xquant-cl-base-bits applies to the xquant-cl formats only");
  if (c.xquant_cl_base == "latent" && (!cl || c.xquant_latent == "off"))
    throw BadFlag("--xquant-cl-base latent applies to the xquant-cl latent form (GQA models)");
}

void check_all(ServerConfig& c, bool bits_given) {
  check_cache(c, bits_given);
  check_paper_settings(c);
  if (c.cache_group_size <= 0 || (c.cache_group_size & (c.cache_group_size - 1)) != 0)
    throw BadFlag("--cache-group-size must be a positive power of two, got " +
                  std::to_string(c.cache_group_size));
  if (c.max_num_batched_tokens < c.max_num_seqs)
    throw BadFlag("--max-num-batched-tokens (" + std::to_string(c.max_num_batched_tokens) +
                  ") must be at least --max-num-seqs (" + std::to_string(c.max_num_seqs) + ")");
  if (c.cache_memory_bytes < (size_t{1} << 20))
    throw BadFlag("--cache-memory must be at least 1MiB, got " +
                  std::to_string(c.cache_memory_bytes));
  if (c.stream_interval < 1)
    throw BadFlag("--stream-interval must be at least 1 (tokens per streamed chunk), got " +
                  std::to_string(c.stream_interval));
  if (c.max_body_bytes < 1024)
    throw BadFlag("--max-body-bytes must be at least 1KiB, got " +
                  std::to_string(c.max_body_bytes));
}

// --chat-template FILE_OR_STRING: a file that exists is read; otherwise text that looks like a
// template (has '{' or a newline) is the template itself, as in vLLM.
std::string resolve_chat_template(const std::string& value) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(value, ec)) {
    std::ifstream in(value, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in && !in.eof()) throw BadFlag("--chat-template: cannot read '" + value + "'");
    return text;
  }
  if (value.find_first_of("{\n") != std::string::npos) return value;
  throw BadFlag("--chat-template: no such file '" + value +
                "' (pass a template file or the template text itself)");
}

void check_origins(const std::vector<std::string>& origins) {
  for (const std::string& o : origins) {
    if (o == "*") continue;
    if ((o.rfind("http://", 0) == 0 || o.rfind("https://", 0) == 0) && o.back() != '/') continue;
    throw BadFlag("--allowed-origins: '" + o +
                  "' is not \"*\" or an origin like https://example.com (scheme and host, no "
                  "path)");
  }
}

// Flag values turned into config values after CLI11 is done (byte sizes like "8MiB", the chat
// template file).
struct RawFlags {
  std::string body = "8MiB";
  std::string cache = "4GiB";
  std::string gpu_cache = "0";
  std::string chat_template;  // resolved after parsing: a file name or the text
};

void add_flags(CLI::App& app, ServerConfig& c, RawFlags& sizes, int& model_len) {
  app.add_option("--model", c.model, "Hugging Face model directory or .gguf file (required)")
      ->envname("XQ_MODEL");
  app.add_option("--host", c.host, "Address to listen on")
      ->envname("XQ_HOST")
      ->capture_default_str();
  app.add_option("--port", c.port, "TCP port (0: any free port)")
      ->envname("XQ_PORT")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--device", c.device, "Where the engine runs")
      ->envname("XQ_DEVICE")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  app.add_option("--served-model-name", c.served_model_name,
                 "Model name clients use (default: the model's directory or file name)");
  app.add_option("--cache", c.cache,
                 "Cache format (xquant-cl: cross-layer deltas of the normed X, per-token groups; "
                 "xquant-cl-ch: per-channel groups, of the pre-norm residual stream; -residual / "
                 "-normed: the other stream. On GQA models (2 kv_dim < hidden) the forms on X "
                 "(xquant-cl, xquant-cl-ch-normed) cache the paper's latent delta dX.Ukv, 2 "
                 "kv_dim wide, Ukv the SVD basis of [Wk|Wv] per layer; --xquant-latent off keeps "
                 "X-wide deltas)")
      ->check(CLI::IsMember({"fp16", "kivi", "xquant", "xquant-ch", "xquant-cl",
                             "xquant-cl-residual", "xquant-cl-ch", "xquant-cl-ch-normed"}))
      ->capture_default_str();
  app.add_option("--cache-bits", c.cache_bits,
                 "Bits per cached value, 2 to 8 (fp16 takes only 16; default 4, xquant-cl*: 2)");
  app.add_option("--cache-group-size", c.cache_group_size, "Quantization group size")
      ->capture_default_str();
  app.add_option("--xquant-latent", c.xquant_latent,
                 "Cache X on the SVD basis of Wk/Wv (GQA models)")
      ->check(CLI::IsMember({"on", "off", "auto"}))
      ->capture_default_str();
  app.add_option("--xquant-latent-k", c.xquant_latent_k,
                 "How the K latent is grouped: per channel (KIVI-key style, fp16 window of < G "
                 "tokens) or per token like the V latent (auto: per token)")
      ->check(CLI::IsMember({"auto", "channel", "token"}))
      ->capture_default_str();
  app.add_option("--xquant-latent-k-fp16-channels", c.xquant_latent_k_fp16_channels,
                 "xquant's K latent: keep its first N channels in fp16 outside the groups (the "
                 "paper's Appendix B keeps channel 0, which carries the outliers: 1)")
      ->capture_default_str();
  app.add_option("--cache-high-precision-layers", c.cache_high_precision_layers,
                 "The first N layers at --cache-high-precision-bits (kivi, xquant, xquant-cl*; "
                 "the paper's Table 4: 3; for xquant-cl* the last of them is the chain's base)")
      ->capture_default_str();
  app.add_option("--cache-high-precision-bits", c.cache_high_precision_bits,
                 "Bits of the high-precision first layers")
      ->capture_default_str();
  app.add_option("--xquant-cl-base-bits", c.xquant_cl_base_bits,
                 "Bits of an xquant-cl chain's base layer, which the accumulator starts from "
                 "(0: --cache-high-precision-bits with high-precision layers, else max(bits, 4))")
      ->capture_default_str();
  app.add_option("--xquant-cl-base", c.xquant_cl_base,
                 "The xquant-cl latent form's base layer: x (X-wide, the accumulator starts "
                 "from X) or latent (on its own basis, 2 kv_dim wide; smaller, still lossless)")
      ->check(CLI::IsMember({"x", "latent"}))
      ->capture_default_str();
  app.add_option("--cache-fp16-window", c.cache_fp16_window,
                 "1: keep the newest tokens of per-channel groups (kivi keys and values, "
                 "xquant-ch, the per-channel K latent) in fp16 until a group fills; 0: read them "
                 "quantized too, so no format sees a full-precision past (fair perplexity)")
      ->capture_default_str();
  app.add_option("--max-num-seqs", c.max_num_seqs, "Sequences running at once")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  app.add_option("--max-num-batched-tokens", c.max_num_batched_tokens, "Tokens per engine step")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  app.add_option("--max-model-len", model_len,
                 "Context limit (default: the model's max_position_embeddings)")
      ->check(CLI::Range(1, 1 << 24));
  app.add_option("--api-key", c.api_key, "Bearer key required on /v1/*")->envname("XQ_API_KEY");
  app.add_option("--seed", c.seed, "Base seed for requests without one")->capture_default_str();
  app.add_option("--threads", c.threads, "CPU threads for the engine (0: all cores)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  app.add_option("--http-threads", c.http_threads, "Threads serving HTTP connections")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--max-connections", c.max_connections,
                 "Open connections at most; at the limit a new connection takes the place of "
                 "the one idle longest, or gets 503 when all are busy (0: the file descriptor "
                 "limit less 64)")
      ->envname("XQ_MAX_CONNECTIONS")
      ->check(CLI::Range(0, 1 << 24))
      ->capture_default_str();
  app.add_option("--max-queued-requests", c.max_queued_requests,
                 "Requests (choices) waiting for the engine at most; past it a request gets 503 "
                 "with Retry-After (0: no limit)")
      ->envname("XQ_MAX_QUEUED_REQUESTS")
      ->check(CLI::Range(0, 1 << 24))
      ->capture_default_str();
  app.add_option("--log-level", c.log_level, "Log verbosity")
      ->envname("XQ_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  app.add_option("--log-format", c.log_format,
                 "Log lines as text, or as JSON objects one per line (time, level, message, "
                 "request_id)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--cache-memory", sizes.cache, "Memory for the cache (e.g. 4GiB)")
      ->envname("XQ_CACHE_MEMORY")
      ->capture_default_str();
  app.add_option("--gpu-memory-utilization", c.gpu_memory_utilization,
                 "Share of GPU memory for weights, workspace and cache (--device cuda; the "
                 "cache gets what weights and workspace leave)")
      ->check(CLI::Range(0.01, 1.0))
      ->capture_default_str();
  app.add_option("--gpu-cache-memory", sizes.gpu_cache,
                 "GPU cache size (e.g. 20GiB) instead of all that the utilization leaves; it must "
                 "fit there (0: all of it)")
      ->capture_default_str();
  app.add_option("--max-body-bytes", sizes.body, "Largest request body accepted (e.g. 8MiB)")
      ->capture_default_str();
  app.add_option("--shutdown-grace", c.shutdown_grace_s,
                 "Seconds SIGTERM waits for running requests")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--engine-stall-timeout", c.engine_stall_timeout_s,
                 "Seconds the engine may go without finishing a step while requests wait before "
                 "/health answers 503 (a hung device or a step far too large for it)")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str();
  app.add_option("--stream-interval", c.stream_interval,
                 "Tokens per streamed chunk after the first, which is sent at once (1: every "
                 "token as it comes; larger: fewer chunks, less server work per token)")
      ->envname("XQ_STREAM_INTERVAL")
      ->capture_default_str();
  app.add_option("--chat-template", sizes.chat_template,
                 "Chat template file (or the template text) instead of the model's");
  app.add_option("--allowed-origins", c.allowed_origins,
                 "CORS: origins allowed to call the API (comma-separated, or \"*\"); default none")
      ->delimiter(',');
}

// Flags without a variable of their own get XQ_ and their name (--max-num-seqs:
// XQ_MAX_NUM_SEQS), so that every setting can come from the environment.
void add_env_names(CLI::App& app) {
  for (CLI::Option* opt : app.get_options()) {
    if (!opt->get_envname().empty() || opt->get_lnames().empty()) continue;
    std::string name = opt->get_lnames()[0];
    if (name == "help" || name == "print-config") continue;
    for (char& ch : name) ch = ch == '-' ? '_' : static_cast<char>(std::toupper(ch));
    opt->envname("XQ_" + name);
  }
}

// XQ_* variables of the environment that are no option's.
std::vector<std::string> unknown_env_names(CLI::App& app) {
  std::set<std::string> known;
  for (CLI::Option* opt : app.get_options()) known.insert(opt->get_envname());
  std::vector<std::string> warnings;
  for (char** e = environ; *e; ++e) {
    const std::string entry(*e);
    const std::string name = entry.substr(0, entry.find('='));
    if (name.rfind("XQ_", 0) == 0 && !known.count(name))
      warnings.push_back(name + " is set but is not a setting of xquant-server (ignored)");
  }
  return warnings;
}

// One CLI11 parse of `args` (reversed, as CLI11 takes them) over the values earlier passes set;
// an error or --help ends parsing with `out` filled in.
std::optional<ServerArgs> parse_pass(CLI::App& app, std::vector<std::string> args, ServerArgs& out,
                                     const std::string& context = "") {
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    std::ostringstream text, err;
    const int code = app.exit(e, text, err);
    out.exit_code = code == 0 ? 0 : 2;
    out.message = code == 0 ? text.str() : context + err.str() + text.str();
    return out;
  }
  return std::nullopt;
}

// The long names of the options the last pass set (from its arguments or the environment).
std::set<std::string> given_options(CLI::App& app) {
  std::set<std::string> names;
  for (CLI::Option* opt : app.get_options())
    if (opt->count() > 0 && !opt->get_lnames().empty()) names.insert(opt->get_lnames()[0]);
  return names;
}

void check_file_keys(CLI::App& app, const std::vector<std::string>& file_args,
                     const std::string& path) {
  for (const std::string& arg : file_args) {
    const std::string key = arg.substr(2, arg.find('=') - 2);
    CLI::Option* opt = nullptr;
    for (CLI::Option* o : app.get_options())
      if (!o->get_lnames().empty() && o->get_lnames()[0] == key) opt = o;
    if (!opt || key == "config" || key == "print-config" || key == "help")
      throw ConfigFileError("--config " + path + ": unknown setting '" + key +
                            "' (settings are flag names without dashes, e.g. max-num-seqs)");
  }
}

// A setting's value as JSON: numbers as numbers, lists as arrays, the rest as strings.
nlohmann::ordered_json json_value(CLI::Option* opt, const std::string& text) {
  if (opt->get_expected_max() > 1) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    std::string items = text;
    if (!items.empty() && items.front() == '[' && items.back() == ']')
      items = items.substr(1, items.size() - 2);
    std::stringstream in(items);
    for (std::string item; std::getline(in, item, ',');)
      if (!item.empty()) list.push_back(item);
    return list;
  }
  const std::string type = opt->get_type_name();
  if (type.rfind("INT", 0) == 0 || type.rfind("UINT", 0) == 0 || type.rfind("FLOAT", 0) == 0) {
    try {
      return nlohmann::ordered_json::parse(text);
    } catch (const nlohmann::json::exception&) {
    }
  }
  return text;
}

// The configuration after flags, environment and file, as a --config file would give it;
// settings never given that have no default are null. The API key is masked.
std::string resolved_json(CLI::App& app, const std::set<std::string>& given) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (CLI::Option* opt : app.get_options()) {
    if (opt->get_lnames().empty()) continue;
    const std::string name = opt->get_lnames()[0];
    if (name == "help" || name == "print-config" || name == "config") continue;
    const bool had_default = !opt->get_default_str().empty();
    opt->capture_default_str();  // now the bound variable's resolved value
    if (!given.count(name) && !had_default) {
      out[name] = nullptr;
    } else if (name == "api-key") {
      out[name] = opt->get_default_str().empty() ? "" : "***";
    } else {
      out[name] = json_value(opt, opt->get_default_str());
    }
  }
  return out.dump(2) + "\n";
}
}  // namespace

size_t parse_byte_size(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0 || i > 18) throw std::invalid_argument("not a byte size: '" + std::string(text) + "'");
  const uint64_t number = std::stoull(std::string(text.substr(0, i)));
  std::string unit;
  for (char ch : text.substr(i))
    unit += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  uint64_t scale = 0;
  if (unit.empty() || unit == "b")
    scale = 1;
  else if (unit == "k" || unit == "kib")
    scale = uint64_t{1} << 10;
  else if (unit == "m" || unit == "mib")
    scale = uint64_t{1} << 20;
  else if (unit == "g" || unit == "gib")
    scale = uint64_t{1} << 30;
  else if (unit == "kb")
    scale = 1000;
  else if (unit == "mb")
    scale = 1000 * 1000;
  else if (unit == "gb")
    scale = 1000 * 1000 * 1000;
  if (scale == 0) throw std::invalid_argument("unknown size unit in '" + std::string(text) + "'");
  if (number > std::numeric_limits<size_t>::max() / scale)
    throw std::invalid_argument("byte size too large: '" + std::string(text) + "'");
  return static_cast<size_t>(number * scale);
}

ServerArgs parse_server_args(int argc, const char* const* argv) {
  ServerConfig c;
  RawFlags sizes;
  int model_len = 0;
  CLI::App app{"xquant-server: an OpenAI-compatible LLM server with XQuant caches",
               "xquant-server"};
  add_flags(app, c, sizes, model_len);
  std::string config_path;
  app.add_option("--config", config_path,
                 "YAML or JSON file of settings: flag names without dashes as keys (e.g. "
                 "max-num-seqs: 32)");
  bool print_config = false;
  app.add_flag("--print-config", print_config,
               "Print the resolved configuration as JSON (usable as a --config file) and exit");
  add_env_names(app);
  app.footer(
      "Every flag can also be set by its environment variable (shown as Env:) or in the --config "
      "file. Precedence: flags > environment > config file > defaults.");

  ServerArgs out;
  auto fail = [&out](const std::string& message) {
    out.exit_code = 2;
    out.message = message + "\nRun with --help for more information.\n";
    return out;
  };
  std::vector<std::string> cli_args;  // CLI11 parses a vector from its back
  for (int i = argc - 1; i > 0; --i) cli_args.emplace_back(argv[i]);
  // The command line (with the environment) first, for --config, --help and syntax errors; then
  // the file's settings; then the command line again over them.
  if (auto e = parse_pass(app, cli_args, out)) return *e;
  std::set<std::string> given = given_options(app);
  if (!config_path.empty()) {
    std::vector<std::string> file_args;
    try {
      file_args = config_file_args(config_path);
      check_file_keys(app, file_args, config_path);
    } catch (const ConfigFileError& e) {
      return fail(e.what());
    }
    std::reverse(file_args.begin(), file_args.end());
    if (auto e = parse_pass(app, file_args, out, "--config " + config_path + ": ")) return *e;
    given.merge(given_options(app));
    if (auto e = parse_pass(app, cli_args, out)) return *e;
    given.merge(given_options(app));
  }
  for (auto [flag, text, dest] :
       {std::tuple{"--max-body-bytes", &sizes.body, &c.max_body_bytes},
        std::tuple{"--cache-memory", &sizes.cache, &c.cache_memory_bytes},
        std::tuple{"--gpu-cache-memory", &sizes.gpu_cache, &c.gpu_cache_memory_bytes}}) {
    try {
      *dest = parse_byte_size(*text);
    } catch (const std::invalid_argument& e) {
      return fail(std::string(flag) + ": " + e.what());
    }
  }
  if (given.count("max-model-len")) c.max_model_len = model_len;
  try {
    check_all(c, given.count("cache-bits") > 0);
    if (given.count("chat-template")) c.chat_template = resolve_chat_template(sizes.chat_template);
    check_origins(c.allowed_origins);
  } catch (const BadFlag& e) {
    return fail(e.what());
  }
  if (print_config) {
    out.message = resolved_json(app, given);
    return out;
  }
  if (c.model.empty())
    return fail("--model is required (or XQ_MODEL, or model: in the --config file)");
  out.warnings = unknown_env_names(app);
  out.config = std::move(c);
  return out;
}

}  // namespace xq
