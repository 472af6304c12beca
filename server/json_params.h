// Typed, range-checked reads of request JSON parameters; every failure is a 400 ApiError naming
// the parameter. A parameter that is absent or null reads as std::nullopt.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "server/openai_errors.h"

namespace xq {

// Arrays and objects a request body may nest; deeper gets a 400 before it is parsed.
inline constexpr int kMaxJsonDepth = 128;

// Parses a request body that must be a JSON object (not valid JSON or UTF-8, nested deeper than
// kMaxJsonDepth, or holding a number out of double range -> 400).
nlohmann::json parse_json_object(std::string_view body);
// The same keeping the keys in the order sent.
nlohmann::ordered_json parse_ordered_json_object(std::string_view body);
// Throws 400 when the JSON text nests arrays and objects deeper than kMaxJsonDepth.
void check_json_depth(std::string_view body);

std::optional<bool> get_bool(const nlohmann::json& obj, const char* key);
std::optional<std::string> get_string(const nlohmann::json& obj, const char* key);
// Integers; a float with an integral value (16.0) counts. Inclusive bounds.
std::optional<int64_t> get_int(const nlohmann::json& obj, const char* key, int64_t lo, int64_t hi);
// Any number, in [lo, hi]; lo_open excludes lo itself.
std::optional<double> get_number(const nlohmann::json& obj, const char* key, double lo, double hi,
                                 bool lo_open = false);

// A JSON value as an int when it is an integral number in [lo, hi].
std::optional<int64_t> as_int(const nlohmann::json& v, int64_t lo, int64_t hi);

}  // namespace xq
