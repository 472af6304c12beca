// libFuzzer target: arbitrary bytes as a Hugging Face model's tokenizer files (tokenizer.json,
// then after a line "----" tokenizer_config.json), loaded as the server loads them and run on a
// short text. A bad file must end in TokenizerError naming what is wrong; any other exception, a
// crash, a sanitizer report or a hang is a finding.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "engine/tokenizer/tokenizer.h"

namespace {

// A plain array, never destroyed: the exit handler that removes the folder still reads it.
char g_dir[] = "/tmp/hf_tokenizer_fuzz.XXXXXX";

const std::filesystem::path& dir() {
  static const std::filesystem::path d = [] {
    if (mkdtemp(g_dir) == nullptr) std::abort();
    std::atexit([] { std::filesystem::remove_all(g_dir); });
    return std::filesystem::path(g_dir);
  }();
  return d;
}

void write(const std::string& name, std::string_view bytes) {
  std::ofstream(dir() / name, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t cut = input.find("\n----\n");
  write("tokenizer.json", input.substr(0, cut));
  if (cut == std::string_view::npos) {
    std::filesystem::remove(dir() / "tokenizer_config.json");
  } else {
    write("tokenizer_config.json", input.substr(cut + 6));
  }
  try {
    const std::unique_ptr<xq::Tokenizer> tok = xq::load_hf_tokenizer(dir());
    const std::vector<int> ids = tok->encode("Hello wörld <s> 12\n\xe6\x97", true);
    tok->decode(ids, false);
    tok->decode(ids, true);
  } catch (const xq::TokenizerError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hf_tokenizer_fuzz: unexpected exception: %s\n", e.what());
    std::abort();
  }
  return 0;
}
