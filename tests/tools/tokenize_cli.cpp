// Test helper: runs the tokenizer of a model directory on stdin, for comparison with HF.
//   tokenize_cli DIR encode [--no-special] < text        -> JSON array of ids
//   tokenize_cli DIR decode [--skip-special] < json_ids  -> text
// DIR may instead hold vocab_spec.json ({"kind": "spm"|"gpt2", "pieces", "scores", "types",
// "merges", "regexes", "bos", "eos", "add_bos", "add_space_prefix"}): the tokenizer is then
// built by the raw-vocabulary factories that the GGUF loader uses.
// With --batch, stdin is a JSON array of inputs and stdout a JSON array of results (decoded
// text with invalid UTF-8 replaced), so that a test can run many cases in one process.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/vocab_tokenizers.h"

namespace {

std::unique_ptr<xq::Tokenizer> load(const std::filesystem::path& dir) {
  std::ifstream spec_file(dir / "vocab_spec.json");
  if (!spec_file) return xq::load_hf_tokenizer(dir);
  nlohmann::json spec = nlohmann::json::parse(spec_file);
  auto pieces = spec.at("pieces").get<std::vector<std::string>>();
  auto types = spec.value("types", std::vector<int>{});
  int bos = spec.value("bos", -1);
  auto eos = spec.value("eos", std::vector<int>{});
  bool add_bos = spec.value("add_bos", false);
  if (spec.at("kind") == "spm") {
    return xq::make_spm_tokenizer(pieces, spec.at("scores").get<std::vector<float>>(), types, bos,
                                  eos, add_bos, spec.value("add_space_prefix", true), std::nullopt);
  }
  return xq::make_gpt2_bpe_tokenizer(pieces, spec.at("merges").get<std::vector<std::string>>(),
                                     types, spec.value("regexes", std::vector<std::string>{}), bos,
                                     eos, add_bos, std::nullopt,
                                     spec.value("ignore_merges", false));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: tokenize_cli DIR encode [--no-special] | decode [--skip-special]\n";
    return 2;
  }
  std::string mode = argv[2];
  bool flag = false, batch = false;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--batch")
      batch = true;
    else if (a == "--no-special" || a == "--skip-special")
      flag = true;
    else {
      std::cerr << "unknown option " << a << "\n";
      return 2;
    }
  }
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  try {
    auto tok = load(argv[1]);
    if (batch && mode == "encode") {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& text : nlohmann::json::parse(input))
        out.push_back(tok->encode(text.get<std::string>(), !flag));
      std::cout << out.dump() << "\n";
    } else if (batch && mode == "decode") {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& ids : nlohmann::json::parse(input))
        out.push_back(xq::sanitize_utf8(tok->decode(ids.get<std::vector<int>>(), flag)));
      std::cout << out.dump() << "\n";
    } else if (mode == "encode") {
      std::cout << nlohmann::json(tok->encode(input, !flag)).dump() << "\n";
    } else if (mode == "decode") {
      auto ids = nlohmann::json::parse(input).get<std::vector<int>>();
      std::cout << tok->decode(ids, flag);
    } else {
      std::cerr << "unknown mode " << mode << "\n";
      return 2;
    }
  } catch (const std::exception& e) {
    std::cerr << "tokenize_cli: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
