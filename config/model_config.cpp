// Parsing of Hugging Face config.json / generation_config.json into ModelConfig.
#include "config/model_config.h"

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>

#include "config/json_fields.h"

namespace xq {
namespace {

constexpr const char* kSupportedTypes = "llama, mistral, qwen2, qwen3, gemma3_text, gemma3";

RopeScaling parse_rope_scaling(const JsonFields& f) {
  RopeScaling rs;
  auto sub = f.object("rope_scaling");
  if (!sub) return rs;
  // Transformers renamed "type" to "rope_type"; checkpoints carry either.
  std::string key = sub->has("rope_type") ? "rope_type" : "type";
  std::string type = sub->get_string(key);
  if (type == "default") return rs;
  if (type == "linear") {
    rs.type = type;
    rs.factor = sub->get_float("factor");
  } else if (type == "llama3") {
    rs.type = type;
    rs.factor = sub->get_float("factor");
    rs.low_freq_factor = sub->get_float("low_freq_factor");
    rs.high_freq_factor = sub->get_float("high_freq_factor");
    rs.original_max_position = sub->get_int("original_max_position_embeddings");
  } else {
    throw ConfigError("field '" + sub->name(key) + "' is '" + type +
                      "', which is not supported (supported: linear, llama3)");
  }
  return rs;
}

void parse_token_ids(const JsonFields& f, ModelConfig& c) {
  c.bos_token_id = f.get_int("bos_token_id", c.bos_token_id);
  if (f.has("eos_token_id")) c.eos_token_ids = f.get_int_list("eos_token_id");
}

// Llama, Mistral and Qwen2 share one block layout; their configs always spell out the sizes.
// `layer_types` (sliding_attention / full_attention per layer) when the config lists them.
std::optional<std::vector<bool>> listed_layer_types(const JsonFields& f) {
  if (!f.has("layer_types")) return std::nullopt;
  const auto& types = f.raw("layer_types");
  if (!types.is_array()) throw ConfigError("field '" + f.name("layer_types") + "' must be a list");
  std::vector<bool> sliding;
  for (const auto& t : types) {
    std::string s = t.is_string() ? t.get<std::string>() : t.dump();
    if (s != "sliding_attention" && s != "full_attention") {
      throw ConfigError("field '" + f.name("layer_types") + "' has entry '" + s +
                        "' (expected sliding_attention or full_attention)");
    }
    sliding.push_back(s == "sliding_attention");
  }
  return sliding;
}

// Which Gemma 3 layers use the local window: `layer_types` when given, else every layer but
// each Nth.
std::vector<bool> gemma3_layer_pattern(const JsonFields& f, int num_layers) {
  if (auto listed = listed_layer_types(f)) return *listed;
  // Older exports wrote the pattern as "_sliding_window_pattern".
  std::string key =
      f.has("sliding_window_pattern") ? "sliding_window_pattern" : "_sliding_window_pattern";
  int every = f.get_int(key, 6);
  if (every <= 0) throw ConfigError("field '" + f.name(key) + "' must be positive");
  std::vector<bool> sliding;
  for (int i = 0; i < num_layers; ++i) sliding.push_back((i + 1) % every != 0);
  return sliding;
}

// num_hidden_layers, checked before the per-layer tables are built from it.
int checked_layer_count(const JsonFields& f, int n) {
  if (n < 1 || n > ModelConfig::kMaxLayers)
    throw ConfigError("field '" + f.name("num_hidden_layers") + "' is " + std::to_string(n) +
                      ", out of range (1 to " + std::to_string(ModelConfig::kMaxLayers) + ")");
  return n;
}

ModelConfig parse_llama_family(const JsonFields& f, const std::string& model_type) {
  ModelConfig c;
  c.model_type = model_type;
  c.arch = Arch::Llama;
  c.vocab_size = f.get_int("vocab_size");
  c.hidden_size = f.get_int("hidden_size");
  c.intermediate_size = f.get_int("intermediate_size");
  c.num_layers = checked_layer_count(f, f.get_int("num_hidden_layers"));
  c.num_heads = f.get_int("num_attention_heads");
  c.num_kv_heads = f.get_int("num_key_value_heads", c.num_heads);
  // head_dim is absent in most configs; a 0 heads count is reported by validate().
  c.head_dim = f.get_int("head_dim", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
  c.max_position_embeddings = f.get_int("max_position_embeddings", c.max_position_embeddings);
  c.rms_norm_eps = f.get_float("rms_norm_eps", 1e-6f);
  c.rope_theta = f.get_float("rope_theta", 10000.0f);
  c.rope_scaling = parse_rope_scaling(f);
  c.tie_word_embeddings = f.get_bool("tie_word_embeddings", false);
  // Qwen2 always has q/k/v biases, and its config.json does not say so.
  c.attention_bias = model_type == "qwen2" ? true : f.get_bool("attention_bias", false);
  // Which layers window their attention, by transformers' rules: the listed layer_types;
  // else Mistral every layer (v0.1's 4096; later versions write null); Qwen2/3, only with
  // use_sliding_window, the layers from max_window_layers on. Llama has no window.
  const bool qwen = model_type == "qwen2" || model_type == "qwen3";
  const bool windowed = qwen ? f.get_bool("use_sliding_window", false) : model_type == "mistral";
  if (windowed) c.sliding_window = f.get_int("sliding_window", 0);
  if (c.sliding_window > 0) {
    if (auto listed = listed_layer_types(f)) {
      c.layer_is_sliding = *listed;
    } else {
      const int from = qwen ? f.get_int("max_window_layers", c.num_layers) : 0;
      for (int i = 0; i < c.num_layers; ++i) c.layer_is_sliding.push_back(i >= from);
    }
  }
  parse_token_ids(f, c);
  return c;
}

// Gemma 3's text part. Missing fields take Gemma3TextConfig's defaults, since the multimodal
// checkpoints (model_type gemma3) write only the fields that differ from them.
ModelConfig parse_gemma3_text(const JsonFields& f) {
  ModelConfig c;
  c.arch = Arch::Gemma3;
  c.vocab_size = f.get_int("vocab_size", 262208);
  c.hidden_size = f.get_int("hidden_size", 2304);
  c.intermediate_size = f.get_int("intermediate_size", 9216);
  c.num_layers = checked_layer_count(f, f.get_int("num_hidden_layers", 26));
  c.num_heads = f.get_int("num_attention_heads", 8);
  c.num_kv_heads = f.get_int("num_key_value_heads", 4);
  c.head_dim = f.get_int("head_dim", 256);
  c.max_position_embeddings = f.get_int("max_position_embeddings", 131072);
  c.rms_norm_eps = f.get_float("rms_norm_eps", 1e-6f);
  c.rope_theta = f.get_float("rope_theta", 1000000.0f);
  c.rope_local_theta = f.get_float("rope_local_base_freq", 10000.0f);
  c.rope_scaling = parse_rope_scaling(f);
  c.tie_word_embeddings = f.get_bool("tie_word_embeddings", true);
  c.attention_bias = f.get_bool("attention_bias", false);
  c.query_pre_attn_scalar = f.get_float("query_pre_attn_scalar", 256.0f);
  c.sliding_window = f.get_int("sliding_window", 4096);
  c.final_logit_softcap = f.get_float("final_logit_softcapping", 0.0f);
  c.attn_logit_softcap = f.get_float("attn_logit_softcapping", 0.0f);
  c.layer_is_sliding = gemma3_layer_pattern(f, c.num_layers);
  c.bos_token_id = 2;
  c.eos_token_ids = {1};
  parse_token_ids(f, c);
  return c;
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw ConfigError("cannot read " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::json parse_json_file(const std::filesystem::path& p) {
  try {
    return nlohmann::json::parse(read_file(p));
  } catch (const nlohmann::json::parse_error& e) {
    throw ConfigError(p.string() + ": invalid JSON at byte " + std::to_string(e.byte) + " (" +
                      e.what() + ")");
  } catch (const nlohmann::json::exception& e) {
    // A number beyond double's range (1e400) is out_of_range, not a parse_error.
    throw ConfigError(p.string() + ": invalid JSON (" + e.what() + ")");
  }
}

}  // namespace

ModelConfig parse_hf_config(const nlohmann::json& j) {
  JsonFields f(j, "");
  if (!f.has("model_type")) {
    throw ConfigError("field 'model_type' is missing (supported: " + std::string(kSupportedTypes) +
                      ")");
  }
  std::string type = f.get_string("model_type");
  ModelConfig c;
  if (type == "llama" || type == "mistral" || type == "qwen2" || type == "qwen3") {
    c = parse_llama_family(f, type);
  } else if (type == "gemma3_text") {
    c = parse_gemma3_text(f);
  } else if (type == "gemma3") {
    auto text = f.object("text_config");
    if (!text) throw ConfigError("field 'text_config' is missing (model_type gemma3)");
    c = parse_gemma3_text(*text);
    // The multimodal wrapper's own token ids (e.g. eos [1, 106]) take precedence.
    parse_token_ids(f, c);
  } else {
    throw ConfigError("model_type '" + type +
                      "' is not supported (supported: " + std::string(kSupportedTypes) + ")");
  }
  c.model_type = type;
  c.validate();
  return c;
}

ModelConfig load_hf_config(const std::filesystem::path& dir) {
  auto config_path = dir / "config.json";
  if (!std::filesystem::is_regular_file(config_path)) {
    throw ConfigError("config.json not found in " + dir.string());
  }
  nlohmann::json j = parse_json_file(config_path);
  ModelConfig c;
  try {
    c = parse_hf_config(j);
  } catch (const ConfigError& e) {
    throw ConfigError(config_path.string() + ": " + e.what());
  }
  // generation_config.json often lists more end-of-turn ids (Llama 3 instruct's <|eot_id|>).
  auto gen_path = dir / "generation_config.json";
  if (std::filesystem::is_regular_file(gen_path)) {
    nlohmann::json g = parse_json_file(gen_path);
    try {
      JsonFields gf(g, "");
      for (int id : gf.get_int_list("eos_token_id")) {
        if (std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), id) ==
            c.eos_token_ids.end()) {
          c.eos_token_ids.push_back(id);
        }
      }
      if (c.bos_token_id < 0) c.bos_token_id = gf.get_int("bos_token_id", -1);
      c.validate();
    } catch (const ConfigError& e) {
      throw ConfigError(gen_path.string() + ": " + e.what());
    }
  }
  return c;
}

}  // namespace xq
