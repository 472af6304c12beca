// Test helper: runs token ids through a model (prefilled in chunks of N; N=1 decodes token by
// token through the cache) and writes every position's logits as float32 [n, vocab].
//   logits_cli MODEL --tokens 1,2,3 [--chunk N] [--cache fp16] [--bits B] --out FILE(.npy|raw)
//   [--time] prints the mean seconds per forward call to stdout.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/model/model.h"

namespace {

std::vector<int> parse_ids(const std::string& s) {
  std::vector<int> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) ids.push_back(std::stoi(item));
  }
  return ids;
}

// NumPy .npy version 1.0: magic, header length, a dict literal padded to a multiple of 64.
void write_npy(const std::string& path, const std::vector<float>& data, size_t rows, size_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  const char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  f.write(len_bytes, 2);
  f << header;
  f.write(reinterpret_cast<const char*>(data.data()), data.size() * sizeof(float));
  if (!f) throw std::runtime_error("cannot write " + path);
}

int run(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: logits_cli MODEL --tokens 1,2,3 [--chunk N] [--cache fp16] "
                 "[--bits B] --out FILE\n";
    return 2;
  }
  std::string model_path = argv[1], out_path;
  std::vector<int> tokens;
  int chunk = 0;
  bool timing = false;
  xq::EngineOptions opts;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    if (a == "--tokens") {
      tokens = parse_ids(next());
    } else if (a == "--chunk") {
      chunk = std::stoi(next());
    } else if (a == "--cache") {
      opts.cache.format = next();
    } else if (a == "--bits") {
      opts.cache.bits = std::stoi(next());
    } else if (a == "--out") {
      out_path = next();
    } else if (a == "--time") {
      timing = true;
    } else {
      throw std::invalid_argument("unknown argument " + a);
    }
  }
  if (tokens.empty()) throw std::invalid_argument("--tokens is required");
  if (chunk <= 0) chunk = static_cast<int>(tokens.size());

  xq::LoadedModel lm = xq::load_model(model_path, opts);
  xq::Model& m = *lm.model;
  auto cache = m.cache_format().new_sequence();
  std::vector<float> all, out;
  double seconds = 0.0;
  int calls = 0;
  for (size_t b = 0; b < tokens.size(); b += chunk) {
    const size_t n = std::min(tokens.size() - b, static_cast<size_t>(chunk));
    xq::SeqInput in{cache.get(), std::span<const int>(tokens).subspan(b, n), static_cast<int>(b),
                    true};
    const auto t0 = std::chrono::steady_clock::now();
    m.forward(std::span<const xq::SeqInput>(&in, 1), out);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++calls;
    all.insert(all.end(), out.begin(), out.end());
  }
  const size_t vocab = m.config().vocab_size;
  if (!out_path.empty()) {
    if (out_path.size() > 4 && out_path.substr(out_path.size() - 4) == ".npy") {
      write_npy(out_path, all, tokens.size(), vocab);
    } else {
      std::ofstream f(out_path, std::ios::binary);
      f.write(reinterpret_cast<const char*>(all.data()), all.size() * sizeof(float));
    }
  }
  if (timing) std::cout << "seconds_per_forward " << seconds / calls << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "logits_cli: " << e.what() << "\n";
    return 1;
  }
}
