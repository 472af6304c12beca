// load_hf_tokenizer: tokenizer.json plus the BOS/EOS/chat-template facts that live in
// tokenizer_config.json (and generation_config.json) of a Hugging Face model directory.
#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/hf_json_components.h"

namespace xq {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::optional<std::string> read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json parse_json_file(const fs::path& path, bool required) {
  std::optional<std::string> text = read_text(path);
  if (!text) {
    if (required) throw TokenizerError("cannot read " + path.string());
    return json();
  }
  try {
    return json::parse(*text);
  } catch (const json::exception& e) {
    throw TokenizerError(path.string() + ": invalid JSON: " + e.what());
  }
}

// A token named in tokenizer_config.json: "text" or {"content": "text", ...}.
std::optional<std::string> token_text(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content")) return (*it)["content"].get<std::string>();
  return std::nullopt;
}

std::optional<bool> flag(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || !it->is_boolean()) return std::nullopt;
  return it->get<bool>();
}

// chat_template: a string, or a list of {name, template} of which "default" is the one.
std::optional<std::string> read_chat_template(const json& cfg, const fs::path& dir) {
  if (auto it = cfg.find("chat_template"); it != cfg.end()) {
    if (it->is_string()) return it->get<std::string>();
    if (it->is_array()) {
      for (const json& t : *it)
        if (t.value("name", "") == "default") return t.at("template").get<std::string>();
    }
  }
  // Newer transformers versions save the template next to the config.
  if (auto text = read_text(dir / "chat_template.jinja")) return text;
  json separate = parse_json_file(dir / "chat_template.json", false);
  if (separate.is_object() && separate.contains("chat_template"))
    return separate["chat_template"].get<std::string>();
  return std::nullopt;
}

void add_unique(std::vector<int>& ids, int id) {
  if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
}

std::optional<int> lookup(const TokenizerParts& parts, const std::string& text) {
  for (const AddedToken& t : parts.added_tokens)
    if (t.content == text) return t.id;
  return parts.model->find(text);
}

// BOS/EOS ids, and which ids encode() adds around the text.
void read_special_ids(const json& cfg, const json& gen, bool has_post_processor,
                      TokenizerParts& parts) {
  auto id_of = [&](const char* key) -> std::optional<int> {
    auto text = token_text(cfg, key);
    if (!text) return std::nullopt;
    auto id = lookup(parts, *text);
    if (!id)
      throw TokenizerError("tokenizer_config.json " + std::string(key) + " \"" + *text +
                           "\" is not a token");
    return id;
  };
  std::optional<int> bos = id_of("bos_token");
  if (!bos && gen.is_object() && gen.contains("bos_token_id") && gen["bos_token_id"].is_number())
    bos = hf::token_id(gen["bos_token_id"], "generation_config.json bos_token_id");
  parts.bos_id = bos.value_or(-1);
  if (auto eos = id_of("eos_token")) parts.eos_ids.push_back(*eos);
  if (gen.is_object() && gen.contains("eos_token_id")) {
    const json& e = gen["eos_token_id"];
    if (e.is_number())
      add_unique(parts.eos_ids, hf::token_id(e, "generation_config.json eos_token_id"));
    if (e.is_array())
      for (const json& id : e)
        add_unique(parts.eos_ids, hf::token_id(id, "generation_config.json eos_token_id"));
  }

  // The Llama/Gemma tokenizer classes of transformers rebuild the post-processor from these
  // flags; elsewhere they only matter when tokenizer.json has no post-processor.
  std::string cls = cfg.value("tokenizer_class", "");
  bool flags_rule = !has_post_processor || cls.starts_with("Llama") ||
                    cls.starts_with("CodeLlama") || cls.starts_with("Gemma");
  if (!flags_rule) return;
  if (auto add_bos = flag(cfg, "add_bos_token")) {
    std::erase(parts.prefix_ids, parts.bos_id);
    if (*add_bos && parts.bos_id >= 0)
      parts.prefix_ids.insert(parts.prefix_ids.begin(), parts.bos_id);
  }
  if (auto add_eos = flag(cfg, "add_eos_token")) {
    if (auto eos = id_of("eos_token")) {
      std::erase(parts.suffix_ids, *eos);
      if (*add_eos) parts.suffix_ids.push_back(*eos);
    }
  }
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const fs::path& dir) {
  fs::path path = dir / "tokenizer.json";
  json tj = parse_json_file(path, true);
  json cfg = parse_json_file(dir / "tokenizer_config.json", false);
  if (!cfg.is_object()) cfg = json::object();
  json gen = parse_json_file(dir / "generation_config.json", false);
  try {
    if (!tj.is_object() || !tj.contains("model")) throw TokenizerError("no \"model\" object");
    TokenizerParts parts;
    parts.model = hf::read_bpe_model(tj["model"]);
    parts.added_tokens = hf::read_added_tokens(tj.value("added_tokens", json()));
    hf::add_normalizer(tj.value("normalizer", json()), parts.normalizer);
    hf::add_pre_tokenizer(tj.value("pre_tokenizer", json()), parts.pre_tokenizer);
    hf::add_decoder(tj.value("decoder", json()), parts.decoder);
    bool has_post = hf::read_post_processor(tj.value("post_processor", json()), parts.prefix_ids,
                                            parts.suffix_ids);
    read_special_ids(cfg, gen, has_post, parts);
    parts.chat_template = read_chat_template(cfg, dir);
    return std::make_unique<BpeTokenizer>(std::move(parts));
  } catch (const json::exception& e) {
    throw TokenizerError(path.string() + ": " + e.what());
  } catch (const TokenizerError& e) {
    throw TokenizerError(path.string() + ": " + e.what());
  }
}

}  // namespace xq
