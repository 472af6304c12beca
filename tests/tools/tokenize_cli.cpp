// Test helper: runs the tokenizer of a model directory on stdin, for comparison with HF.
//   tokenize_cli DIR encode [--no-special] < text        -> JSON array of ids
//   tokenize_cli DIR decode [--skip-special] < json_ids  -> text
// With --batch, stdin is a JSON array of inputs and stdout a JSON array of results (decoded
// text with invalid UTF-8 replaced), so that a test can run many cases in one process.
#include <iostream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: tokenize_cli DIR encode [--no-special] | decode [--skip-special]\n";
    return 2;
  }
  std::string mode = argv[2];
  bool flag = false, batch = false;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--batch") batch = true;
    else if (a == "--no-special" || a == "--skip-special") flag = true;
    else {
      std::cerr << "unknown option " << a << "\n";
      return 2;
    }
  }
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  try {
    auto tok = xq::load_hf_tokenizer(argv[1]);
    if (batch && mode == "encode") {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& text : nlohmann::json::parse(input)) out.push_back(tok->encode(text.get<std::string>(), !flag));
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
