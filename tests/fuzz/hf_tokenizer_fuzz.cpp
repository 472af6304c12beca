// libFuzzer target: arbitrary bytes as a Hugging Face model's tokenizer files (tokenizer.json,
// then after a line "----" tokenizer_config.json), loaded as the server loads them and run on a
// short text. A bad file must end in TokenizerError naming what is wrong; any other exception, a
// crash, a sanitizer report or a hang is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include "engine/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_dir.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  fuzz_dir::write_pair(input, "tokenizer.json", "tokenizer_config.json");
  try {
    const std::unique_ptr<xq::Tokenizer> tok = xq::load_hf_tokenizer(fuzz_dir::dir());
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
