// libFuzzer target: arbitrary bytes as a .safetensors file: the header length, the header JSON
// (dtypes, shapes, data_offsets that disagree with each other or run past the file), then the
// fp32 conversion of each small tensor it lists. A bad file must end in a WeightError naming
// what is wrong; any other exception, a crash, a sanitizer report or a hang is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <vector>

#include "engine/weights/mapped_file.h"
#include "engine/weights/safetensors_file.h"
#include "engine/weights/weight_source.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const FuzzFile file(data, size);
  try {
    const xq::MappedFile map(file.path());
    std::vector<float> out;
    for (const xq::TensorInfo& t : xq::read_safetensors_header(map)) {
      if (t.numel() > (1 << 16)) continue;
      out.resize(static_cast<size_t>(t.numel()));
      xq::convert_to_f32(t, out.data());
    }
  } catch (const xq::WeightError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "safetensors_fuzz: unexpected exception: %s\n", e.what());
    std::abort();
  }
  return 0;
}
