// libFuzzer target: the Jinja chat-template interpreter on arbitrary template text (a model file or
// --chat-template carries it), rendered over a small conversation. A template it cannot parse or
// render throws; a crash, a sanitizer report or a hang is a finding. scripts/fuzz.sh runs it.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/tokenizer/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::json context = {{"messages",
                                          {{{"role", "system"}, {"content", "be brief"}},
                                           {{"role", "user"}, {"content", "hi"}},
                                           {{"role", "assistant"}, {"content", "hello"}}}},
                                         {"bos_token", "<s>"},
                                         {"eos_token", "</s>"},
                                         {"add_generation_prompt", true}};
  try {
    const xq::ChatTemplate tmpl(std::string(reinterpret_cast<const char*>(data), size));
    tmpl.render(context);
  } catch (const std::exception&) {
  }
  return 0;
}
