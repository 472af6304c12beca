#include "engine/tokenizer/hf_json_components.h"

#include "engine/tokenizer/icu_regex.h"

namespace xq::hf {
namespace {

using nlohmann::json;

std::string type_of(const json& j, const char* what) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    throw TokenizerError(std::string(what) + " has no \"type\"");
  }
  return j["type"].get<std::string>();
}

[[noreturn]] void unsupported(const char* what, const std::string& type) {
  throw TokenizerError(std::string("unsupported ") + what + " type \"" + type + "\"");
}

template <typename T>
T field(const json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return it->get<T>();
}

// {"String": "..."} or {"Regex": "..."}: the string, and whether it is a regex.
std::pair<std::string, bool> read_pattern(const json& j, const char* what) {
  const json& p = j.at("pattern");
  if (p.contains("String")) return {p["String"].get<std::string>(), false};
  if (p.contains("Regex")) return {p["Regex"].get<std::string>(), true};
  throw TokenizerError(std::string(what) + " pattern is neither String nor Regex");
}

PrependScheme read_prepend_scheme(const json& j) {
  if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
    std::string s = j["prepend_scheme"].get<std::string>();
    if (s == "first") return PrependScheme::kFirst;
    if (s == "always") return PrependScheme::kAlways;
    if (s == "never") return PrependScheme::kNever;
    throw TokenizerError("unknown Metaspace prepend_scheme \"" + s + "\"");
  }
  // Older files only have add_prefix_space.
  return field(j, "add_prefix_space", true) ? PrependScheme::kAlways : PrependScheme::kNever;
}

std::string metaspace_replacement(const json& j) {
  std::string r = field<std::string>(j, "replacement", "\xE2\x96\x81");
  if (r.empty()) throw TokenizerError("Metaspace replacement is empty");
  return r;
}

void read_template(const json& j, std::vector<int>& prefix, std::vector<int>& suffix) {
  prefix.clear();
  suffix.clear();
  bool after_a = false;
  for (const json& item : j.at("single")) {
    if (item.contains("Sequence")) {
      after_a = true;
    } else if (item.contains("SpecialToken")) {
      const json& tokens = j.at("special_tokens");
      const json& spec = tokens.at(item["SpecialToken"].at("id").get<std::string>());
      for (const json& id : spec.at("ids"))
        (after_a ? suffix : prefix).push_back(token_id(id, "post_processor id"));
    } else {
      throw TokenizerError("TemplateProcessing item is neither Sequence nor SpecialToken");
    }
  }
}

}  // namespace

void add_normalizer(const json& j, Normalizer& out) {
  if (j.is_null()) return;
  std::string type = type_of(j, "normalizer");
  if (type == "Sequence") {
    for (const json& n : j.at("normalizers")) add_normalizer(n, out);
  } else if (type == "Prepend") {
    out.add(prepend_step(j.at("prepend").get<std::string>()));
  } else if (type == "Replace") {
    auto [pattern, is_regex] = read_pattern(j, "Replace normalizer");
    std::string content = j.at("content").get<std::string>();
    if (is_regex)
      out.add(regex_replace_step(std::make_shared<IcuRegex>(pattern), content));
    else
      out.add(replace_step(pattern, content));
  } else if (type == "NFC") {
    out.add(unicode_form_step(UnicodeForm::kNFC));
  } else if (type == "NFD") {
    out.add(unicode_form_step(UnicodeForm::kNFD));
  } else if (type == "NFKC") {
    out.add(unicode_form_step(UnicodeForm::kNFKC));
  } else if (type == "NFKD") {
    out.add(unicode_form_step(UnicodeForm::kNFKD));
  } else if (type == "Lowercase") {
    out.add(lowercase_step());
  } else if (type == "Strip") {
    out.add(strip_step(field(j, "strip_left", true), field(j, "strip_right", true)));
  } else {
    unsupported("normalizer", type);
  }
}

void add_pre_tokenizer(const json& j, PreTokenizer& out) {
  if (j.is_null()) return;
  std::string type = type_of(j, "pre_tokenizer");
  if (type == "Sequence") {
    for (const json& p : j.at("pretokenizers")) add_pre_tokenizer(p, out);
  } else if (type == "ByteLevel") {
    out.add(byte_level_step(field(j, "add_prefix_space", true), field(j, "use_regex", true)));
  } else if (type == "Split") {
    auto [pattern, is_regex] = read_pattern(j, "Split pre_tokenizer");
    SplitBehavior behavior = parse_split_behavior(j.at("behavior").get<std::string>());
    bool invert = field(j, "invert", false);
    if (is_regex)
      out.add(regex_split_step(std::make_shared<IcuRegex>(pattern), behavior, invert));
    else
      out.add(string_split_step(pattern, behavior, invert));
  } else if (type == "Metaspace") {
    out.add(
        metaspace_step(metaspace_replacement(j), read_prepend_scheme(j), field(j, "split", true)));
  } else if (type == "Digits") {
    out.add(digits_step(field(j, "individual_digits", false)));
  } else {
    unsupported("pre_tokenizer", type);
  }
}

void add_decoder(const json& j, DecoderSpec& out) {
  if (j.is_null()) return;
  std::string type = type_of(j, "decoder");
  if (type == "Sequence") {
    for (const json& d : j.at("decoders")) add_decoder(d, out);
  } else if (type == "ByteLevel") {
    out.ops.push_back({DecodeOp::kByteLevel, "", ""});
  } else if (type == "ByteFallback") {
    out.ops.push_back({DecodeOp::kByteFallback, "", ""});
  } else if (type == "Fuse") {
    // Joining tokens is what decoding does anyway.
  } else if (type == "Replace") {
    auto [pattern, is_regex] = read_pattern(j, "Replace decoder");
    if (is_regex) throw TokenizerError("Replace decoder with a Regex pattern is not supported");
    out.ops.push_back({DecodeOp::kReplace, pattern, j.at("content").get<std::string>()});
  } else if (type == "Strip") {
    if (field<std::string>(j, "content", " ") != " " || field(j, "stop", 0) != 0) {
      throw TokenizerError("Strip decoder is only supported for leading spaces");
    }
    out.strip_leading_spaces = field(j, "start", 0);
  } else if (type == "Metaspace") {
    out.ops.push_back({DecodeOp::kReplace, metaspace_replacement(j), " "});
    if (read_prepend_scheme(j) != PrependScheme::kNever) out.strip_leading_spaces = 1;
  } else {
    unsupported("decoder", type);
  }
}

bool read_post_processor(const json& j, std::vector<int>& prefix, std::vector<int>& suffix) {
  if (j.is_null()) return false;
  std::string type = type_of(j, "post_processor");
  if (type == "Sequence") {
    bool any = false;
    for (const json& p : j.at("processors")) any = read_post_processor(p, prefix, suffix) || any;
    return any;
  }
  if (type == "ByteLevel") return false;  // only adjusts offsets
  if (type == "TemplateProcessing") {
    read_template(j, prefix, suffix);
    return true;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    prefix = {token_id(j.at("cls").at(1), "post_processor cls id")};
    suffix = {token_id(j.at("sep").at(1), "post_processor sep id")};
    return true;
  }
  unsupported("post_processor", type);
}

std::unique_ptr<BpeModel> read_bpe_model(const json& j) {
  std::string type = field<std::string>(j, "type", "BPE");
  if (type != "BPE") unsupported("model", type);
  if (!field<std::string>(j, "continuing_subword_prefix", "").empty() ||
      !field<std::string>(j, "end_of_word_suffix", "").empty()) {
    throw TokenizerError("BPE continuing_subword_prefix / end_of_word_suffix are not supported");
  }
  TokenMap vocab;
  const json& v = j.at("vocab");
  vocab.reserve(v.size());
  for (auto it = v.begin(); it != v.end(); ++it)
    vocab.emplace(it.key(), token_id(it.value(), "the id of vocab entry \"" + it.key() + "\""));
  BpeOptions options;
  if (j.contains("unk_token") && j["unk_token"].is_string())
    options.unk_token = j["unk_token"].get<std::string>();
  options.byte_fallback = field(j, "byte_fallback", false);
  options.fuse_unk = field(j, "fuse_unk", false);
  options.ignore_merges = field(j, "ignore_merges", false);
  auto model = std::make_unique<BpeModel>(std::move(vocab), std::move(options));

  std::vector<std::pair<std::string, std::string>> merges;
  const json& m = j.contains("merges") ? j["merges"] : json::array();
  merges.reserve(m.size());
  for (const json& merge : m) {
    if (merge.is_string()) {
      const std::string& s = merge.get_ref<const std::string&>();
      size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        throw TokenizerError("BPE merge \"" + s + "\" is not two tokens separated by a space");
      }
      merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (merge.is_array() && merge.size() == 2) {
      merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
    } else {
      throw TokenizerError("BPE merge " + merge.dump() + " is neither \"a b\" nor [a, b]");
    }
  }
  model->add_merges(merges);
  return model;
}

std::vector<AddedToken> read_added_tokens(const json& j) {
  std::vector<AddedToken> out;
  if (j.is_null()) return out;
  for (const json& t : j) {
    AddedToken a;
    a.content = t.at("content").get<std::string>();
    a.id = token_id(t.at("id"), "the id of added token \"" + a.content + "\"");
    a.special = field(t, "special", false);
    a.lstrip = field(t, "lstrip", false);
    a.rstrip = field(t, "rstrip", false);
    a.single_word = field(t, "single_word", false);
    a.normalized = field(t, "normalized", !a.special);
    out.push_back(std::move(a));
  }
  return out;
}

int token_id(const json& v, const std::string& what) {
  constexpr int64_t kLimit = int64_t{1} << 24;  // 16.7M: far past any vocabulary
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() >= kLimit) ||
      (!v.is_number_unsigned() && (v.get<int64_t>() < 0 || v.get<int64_t>() >= kLimit))) {
    throw TokenizerError(what + " is " + v.dump() + ", not a token id (an integer from 0 to " +
                         std::to_string(kLimit - 1) + ")");
  }
  return static_cast<int>(v.get<int64_t>());
}

}  // namespace xq::hf
