// Parameters of the OpenAI and vLLM APIs this server does not implement: a request that sets one
// gets a 400 naming it instead of having it silently ignored.
#pragma once

#include <nlohmann/json.hpp>

namespace xq {

enum class Endpoint { kCompletions, kChat };

// Throws 400 (param: the parameter) for suffix, response_format other than "text", tool_choice
// "required" or a named function, guided decoding, beam search and the legacy function calls.
void reject_unsupported_params(const nlohmann::json& j, Endpoint endpoint);

}  // namespace xq
