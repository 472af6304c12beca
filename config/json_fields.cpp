#include "config/json_fields.h"

#include <limits>

namespace xq {

JsonFields::JsonFields(const nlohmann::json& obj, std::string path)
    : obj_(&obj), path_(std::move(path)) {
  if (!obj.is_object()) {
    throw ConfigError((path_.empty() ? std::string("config") : path_) + " must be a JSON object");
  }
}

bool JsonFields::has(const std::string& key) const {
  auto it = obj_->find(key);
  return it != obj_->end() && !it->is_null();
}

const nlohmann::json& JsonFields::raw(const std::string& key) const {
  if (!has(key)) fail(key, "is missing");
  return obj_->at(key);
}

std::string JsonFields::name(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

void JsonFields::fail(const std::string& key, const std::string& what) const {
  throw ConfigError("field '" + name(key) + "' " + what);
}

int JsonFields::to_int(const std::string& key, const nlohmann::json& v) const {
  // Some exporters write integral values as 8192.0; accept those, reject 8192.5.
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d != static_cast<double>(static_cast<long long>(d))) {
      fail(key, "must be an integer, got " + v.dump());
    }
    if (d < std::numeric_limits<int>::min() || d > std::numeric_limits<int>::max()) {
      fail(key, "is out of range: " + v.dump());
    }
    return static_cast<int>(d);
  }
  if (!v.is_number_integer()) fail(key, "must be an integer, got " + v.dump());
  long long x = v.get<long long>();
  if (v.is_number_unsigned() && v.get<unsigned long long>() > std::numeric_limits<int>::max()) {
    fail(key, "is out of range: " + v.dump());
  }
  if (x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max()) {
    fail(key, "is out of range: " + v.dump());
  }
  return static_cast<int>(x);
}

int JsonFields::get_int(const std::string& key) const { return to_int(key, raw(key)); }

int JsonFields::get_int(const std::string& key, int fallback) const {
  return has(key) ? get_int(key) : fallback;
}

float JsonFields::get_float(const std::string& key) const {
  const auto& v = raw(key);
  if (!v.is_number()) fail(key, "must be a number, got " + v.dump());
  return v.get<float>();
}

float JsonFields::get_float(const std::string& key, float fallback) const {
  return has(key) ? get_float(key) : fallback;
}

bool JsonFields::get_bool(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const auto& v = raw(key);
  if (!v.is_boolean()) fail(key, "must be true or false, got " + v.dump());
  return v.get<bool>();
}

std::string JsonFields::get_string(const std::string& key) const {
  const auto& v = raw(key);
  if (!v.is_string()) fail(key, "must be a string, got " + v.dump());
  return v.get<std::string>();
}

std::vector<int> JsonFields::get_int_list(const std::string& key) const {
  std::vector<int> out;
  if (!has(key)) return out;
  const auto& v = raw(key);
  if (v.is_array()) {
    for (const auto& e : v) out.push_back(to_int(key, e));
  } else {
    out.push_back(to_int(key, v));
  }
  return out;
}

std::optional<JsonFields> JsonFields::object(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  const auto& v = raw(key);
  if (!v.is_object()) fail(key, "must be an object, got " + v.dump());
  return JsonFields(v, name(key));
}

}  // namespace xq
