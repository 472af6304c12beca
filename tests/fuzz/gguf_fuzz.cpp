// libFuzzer target: arbitrary bytes as a .gguf model file, through what the loader does before
// it builds the model: the container (header, metadata, tensor infos, offsets and counts), the
// config from the metadata, the tokenizer from tokenizer.ggml.* (then run on a short text), the
// tensors under their Hugging Face names, and the fp32 conversion of each small tensor.
// A bad file must end in WeightError, ConfigError or TokenizerError, each naming what is wrong;
// any other exception, a crash, a sanitizer report or a hang is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <vector>

#include "config/model_config.h"
#include "engine/model/gguf_tokenizer.h"
#include "engine/weights/gguf_file.h"
#include "engine/weights/gguf_weights.h"
#include "tests/fuzz/fuzz_file.h"

namespace {

void load(const std::string& path) {
  auto file = std::make_shared<const xq::GgufFile>(path);
  const xq::ModelConfig cfg = xq::gguf_model_config(*file);
  const std::unique_ptr<xq::Tokenizer> tok = xq::gguf_tokenizer(*file, cfg);
  const std::vector<int> ids = tok->encode("Hello wörld <s> 12\n", true);
  tok->decode(ids, false);
  const std::unique_ptr<xq::WeightSource> weights = xq::open_gguf_weights(file);
  std::vector<float> out;
  for (const std::string& name : weights->names()) {
    const xq::TensorInfo& t = weights->get(name);
    if (t.numel() > (1 << 16)) continue;
    out.resize(static_cast<size_t>(t.numel()));
    xq::convert_to_f32(t, out.data());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const FuzzFile file(data, size);
  try {
    load(file.path());
  } catch (const xq::WeightError&) {
  } catch (const xq::ConfigError&) {
  } catch (const xq::TokenizerError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gguf_fuzz: unexpected exception: %s\n", e.what());
    std::abort();
  }
  return 0;
}
