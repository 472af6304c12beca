// libFuzzer target: arbitrary bytes as a Hugging Face model's config.json (then, after a line
// "----", its generation_config.json), loaded as the server loads them. A bad file must end in
// ConfigError naming what is wrong; any other exception, a crash, a sanitizer report, a hang or
// an allocation past the RSS limit is a finding.
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

#include "config/model_config.h"

namespace {

// A plain array, never destroyed: the exit handler that removes the folder still reads it.
char g_dir[] = "/tmp/model_config_fuzz.XXXXXX";

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
  write("config.json", input.substr(0, cut));
  if (cut == std::string_view::npos) {
    std::filesystem::remove(dir() / "generation_config.json");
  } else {
    write("generation_config.json", input.substr(cut + 6));
  }
  try {
    const xq::ModelConfig c = xq::load_hf_config(dir());
    // What the loader promises its caller: a config that passed validate().
    if (c.num_layers <= 0 || c.head_dim <= 0 || c.num_heads % c.num_kv_heads != 0) std::abort();
  } catch (const xq::ConfigError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "model_config_fuzz: unexpected exception: %s\n", e.what());
    std::abort();
  }
  return 0;
}
