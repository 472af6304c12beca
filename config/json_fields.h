// JsonFields: typed access to the fields of one JSON object, throwing ConfigError that names the
// field (with its path, e.g. "text_config.hidden_size") when it is missing or of the wrong type.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "config/model_config.h"

namespace xq {

class JsonFields {
 public:
  // `path` prefixes field names in messages; empty for the top-level object.
  JsonFields(const nlohmann::json& obj, std::string path);

  // True when the key exists and is not null: HF writes null for "not set".
  bool has(const std::string& key) const;
  const nlohmann::json& raw(const std::string& key) const;  // requires has(key)
  std::string name(const std::string& key) const;           // "path.key" for messages

  int get_int(const std::string& key) const;
  int get_int(const std::string& key, int fallback) const;
  float get_float(const std::string& key) const;
  float get_float(const std::string& key, float fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key) const;
  // An int or a list of ints (eos_token_id); empty when absent or null.
  std::vector<int> get_int_list(const std::string& key) const;
  // The nested object under `key`, or nullopt when absent or null.
  std::optional<JsonFields> object(const std::string& key) const;

 private:
  [[noreturn]] void fail(const std::string& key, const std::string& what) const;
  int to_int(const std::string& key, const nlohmann::json& v) const;

  const nlohmann::json* obj_;
  std::string path_;
};

}  // namespace xq
