#include "server/param_support.h"

#include <string>

#include "server/openai_errors.h"

namespace xq {
namespace {

using nlohmann::json;

const json* present(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

ApiError not_supported(const std::string& what, const char* param) {
  return invalid_request(what + " is not supported by this server", param);
}

// {"type": "text"} is the default; the JSON modes need guided decoding, which this server lacks.
void check_response_format(const json& j) {
  const json* rf = present(j, "response_format");
  if (!rf) return;
  const json* type = rf->is_object() ? present(*rf, "type") : nullptr;
  if (!type || !type->is_string())
    throw invalid_request("'response_format' must be an object with a string 'type'",
                          "response_format");
  const std::string t = type->get<std::string>();
  if (t == "text") return;
  if (t == "json_object" || t == "json_schema" || t == "structural_tag")
    throw not_supported("'response_format' of type '" + t + "' (structured output)",
                        "response_format");
  throw invalid_request(
      "'response_format.type' must be one of text, json_object, json_schema; got '" + t + "'",
      "response_format");
}

// "none" and "auto" render the tools into the prompt and leave the choice to the model; forcing
// a call needs guided decoding.
void check_tool_choice(const json& j) {
  const json* tc = present(j, "tool_choice");
  if (!tc) return;
  if (tc->is_string()) {
    const std::string v = tc->get<std::string>();
    if (v == "none" || v == "auto") return;
    if (v == "required") throw not_supported("'tool_choice' \"required\"", "tool_choice");
    throw invalid_request(
        "'tool_choice' must be \"none\", \"auto\", \"required\" or a named "
        "function; got '" +
            v + "'",
        "tool_choice");
  }
  if (tc->is_object()) throw not_supported("'tool_choice' naming a function", "tool_choice");
  throw invalid_request("'tool_choice' must be a string or an object", "tool_choice");
}

}  // namespace

void reject_unsupported_params(const json& j, Endpoint endpoint) {
  check_response_format(j);
  if (endpoint == Endpoint::kChat) check_tool_choice(j);
  if (endpoint == Endpoint::kCompletions) {
    const json* suffix = present(j, "suffix");
    if (suffix && !(suffix->is_string() && suffix->get<std::string>().empty()))
      throw not_supported("'suffix'", "suffix");
  }
  for (const char* key : {"guided_json", "guided_regex", "guided_choice", "guided_grammar",
                          "structured_outputs", "functions", "function_call"}) {
    if (present(j, key)) throw not_supported(std::string("'") + key + "'", key);
  }
  if (const json* beam = present(j, "use_beam_search"); beam && *beam != false)
    throw not_supported("'use_beam_search'", "use_beam_search");
}

}  // namespace xq
