#include "server/json_params.h"

#include <cmath>

namespace xq {
namespace {

const nlohmann::json* find(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string range_text(double lo, double hi, bool lo_open) {
  auto num = [](double x) {
    std::string s = std::to_string(x);
    s.erase(s.find_last_not_of('0') + 1);
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  };
  std::string out(lo_open ? "(" : "[");
  out += num(lo);
  out += ", ";
  out += num(hi);
  out += "]";
  return out;
}

}  // namespace

void check_json_depth(std::string_view body) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth)
        throw invalid_request("Request body is nested deeper than " +
                                  std::to_string(kMaxJsonDepth) + " levels of arrays and objects",
                              std::nullopt, "json_too_deep");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

template <typename Json>
Json parse_json_object_as(std::string_view body) {
  // nlohmann's parser and the chat template's walk over values recurse per level: the depth is
  // checked on the text first, so no request can run a thread out of stack.
  check_json_depth(body);
  Json j;
  try {
    j = Json::parse(body.begin(), body.end());
  } catch (const nlohmann::json::parse_error& e) {
    throw invalid_request(std::string("Request body is not valid JSON (or not UTF-8): ") +
                          e.what());
  } catch (const nlohmann::json::exception& e) {  // 1e400: a number no double holds
    throw invalid_request(std::string("Request body has a number out of range: ") + e.what());
  }
  if (!j.is_object()) throw invalid_request("Request body must be a JSON object");
  return j;
}

nlohmann::json parse_json_object(std::string_view body) {
  return parse_json_object_as<nlohmann::json>(body);
}

nlohmann::ordered_json parse_ordered_json_object(std::string_view body) {
  return parse_json_object_as<nlohmann::ordered_json>(body);
}

std::optional<bool> get_bool(const nlohmann::json& obj, const char* key) {
  const nlohmann::json* v = find(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) throw invalid_request(std::string("'") + key + "' must be a boolean", key);
  return v->get<bool>();
}

std::optional<std::string> get_string(const nlohmann::json& obj, const char* key) {
  const nlohmann::json* v = find(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) throw invalid_request(std::string("'") + key + "' must be a string", key);
  return v->get<std::string>();
}

std::optional<int64_t> as_int(const nlohmann::json& v, int64_t lo, int64_t hi) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    const auto i = static_cast<int64_t>(u);
    return i >= lo && i <= hi ? std::optional(i) : std::nullopt;
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    return i >= lo && i <= hi ? std::optional(i) : std::nullopt;
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && d >= static_cast<double>(lo) &&
        d <= static_cast<double>(hi))
      return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

std::optional<int64_t> get_int(const nlohmann::json& obj, const char* key, int64_t lo, int64_t hi) {
  const nlohmann::json* v = find(obj, key);
  if (!v) return std::nullopt;
  const bool integral = v->is_number_integer() ||
                        (v->is_number_float() && v->get<double>() == std::floor(v->get<double>()));
  if (!integral) throw invalid_request(std::string("'") + key + "' must be an integer", key);
  auto i = as_int(*v, lo, hi);
  if (!i)
    throw invalid_request(std::string("'") + key + "' must be an integer in [" +
                              std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                              v->dump(),
                          key);
  return i;
}

std::optional<double> get_number(const nlohmann::json& obj, const char* key, double lo, double hi,
                                 bool lo_open) {
  const nlohmann::json* v = find(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) throw invalid_request(std::string("'") + key + "' must be a number", key);
  const double d = v->get<double>();
  const bool low_ok = lo_open ? d > lo : d >= lo;
  if (!std::isfinite(d) || !low_ok || d > hi)
    throw invalid_request(std::string("'") + key + "' must be in " + range_text(lo, hi, lo_open) +
                              ", got " + v->dump(),
                          key);
  return d;
}

}  // namespace xq
