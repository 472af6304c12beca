// libFuzzer target: arbitrary bytes as a Hugging Face model's config.json (then, after a line
// "----", its generation_config.json), loaded as the server loads them. A bad file must end in
// ConfigError naming what is wrong; any other exception, a crash, a sanitizer report, a hang or
// an allocation past the RSS limit is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include "config/model_config.h"
#include "tests/fuzz/fuzz_dir.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  fuzz_dir::write_pair(input, "config.json", "generation_config.json");
  try {
    const xq::ModelConfig c = xq::load_hf_config(fuzz_dir::dir());
    // What the loader promises its caller: a config that passed validate().
    if (c.num_layers <= 0 || c.head_dim <= 0 || c.num_heads % c.num_kv_heads != 0) std::abort();
  } catch (const xq::ConfigError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "model_config_fuzz: unexpected exception: %s\n", e.what());
    std::abort();
  }
  return 0;
}
