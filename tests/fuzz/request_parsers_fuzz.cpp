// libFuzzer target: the bodies of /v1/completions and /v1/chat/completions through the parsers
// and validators the server runs before any engine work. A rejected body throws (the server
// answers 400); a crash, a sanitizer report or a hang is a finding. scripts/fuzz.sh builds and
// runs it.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string_view>

#include "server/chat_schema.h"
#include "server/completions_schema.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  xq::ModelLimits limits;
  limits.served_name = "m";
  limits.vocab_size = 1000;
  limits.max_model_len = 4096;
  try {
    xq::parse_completion_body(body, limits);
  } catch (const std::exception&) {
  }
  try {
    xq::parse_chat_body(body, limits);
  } catch (const std::exception&) {
  }
  return 0;
}
