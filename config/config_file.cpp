#include "config/config_file.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>

namespace xq {

std::string flag_key(std::string key) {
  key.erase(0, key.find_first_not_of('-'));
  std::replace(key.begin(), key.end(), '_', '-');
  return key;
}

std::vector<std::string> config_file_args(const std::string& path) {
  // JSON is a subset of YAML 1.2 as far as a flat mapping of scalars and lists goes, so one
  // parser reads both.
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw ConfigFileError("--config: cannot read '" + path + "'");
  } catch (const YAML::Exception& e) {
    throw ConfigFileError("--config " + path + ": " + e.what());
  }
  if (root.IsNull()) return {};
  if (!root.IsMap())
    throw ConfigFileError("--config " + path +
                          ": expected a mapping of flag names to values (e.g. port: 8000)");
  std::vector<std::string> args;
  for (const auto& item : root) {
    const std::string key = flag_key(item.first.as<std::string>());
    const YAML::Node& value = item.second;
    if (value.IsNull()) continue;
    if (value.IsScalar()) {
      args.push_back("--" + key + "=" + value.as<std::string>());
      continue;
    }
    if (value.IsSequence() &&
        std::all_of(value.begin(), value.end(), [](const YAML::Node& v) { return v.IsScalar(); })) {
      for (const auto& v : value) args.push_back("--" + key + "=" + v.as<std::string>());
      continue;
    }
    throw ConfigFileError("--config " + path + ": '" + key +
                          "' must be a single value or a list of values");
  }
  return args;
}

}  // namespace xq
