// open_safetensors_dir: a Hugging Face model directory, single-file or sharded, as a WeightSource.
#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "engine/weights/mapped_file.h"
#include "engine/weights/safetensors_file.h"
#include "engine/weights/weight_source.h"

namespace xq {
namespace {

namespace fs = std::filesystem;

class SafetensorsDir : public TensorTable {
 public:
  explicit SafetensorsDir(fs::path dir) : dir_(std::move(dir)) {}

  std::string describe() const override {
    std::string s = dir_.string() + " (checked files ";
    for (size_t i = 0; i < files_.size(); ++i) {
      s += (i > 0 ? ", " : "") + files_[i].path().filename().string();
    }
    return s + ")";
  }

  // Maps the file and takes its tensors; a name already seen in another shard is an error.
  void add_file(const std::string& file_name) {
    files_.emplace_back(dir_ / file_name);
    for (TensorInfo& t : read_safetensors_header(files_.back())) {
      if (const TensorInfo* seen = insert(t)) {
        throw WeightError("tensor " + t.name + " appears in both " + seen->file + " and " + t.file);
      }
    }
  }

 private:
  fs::path dir_;
  std::vector<MappedFile> files_;  // moving a MappedFile keeps its mapping, so pointers stay valid
};

nlohmann::json read_index(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw WeightError("cannot read " + path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw WeightError(path.string() + ": invalid JSON at byte " + std::to_string(e.byte) + " (" +
                      e.what() + ")");
  } catch (const nlohmann::json::exception& e) {
    // A number beyond double's range (1e400) is out_of_range, not a parse_error.
    throw WeightError(path.string() + ": invalid JSON (" + e.what() + ")");
  }
}

// The shards named by model.safetensors.index.json, each opened once.
void open_sharded(SafetensorsDir& source, const fs::path& index_path) {
  nlohmann::json index = read_index(index_path);
  const std::string where = index_path.string();
  auto map = index.find("weight_map");
  if (!index.is_object() || map == index.end() || !map->is_object()) {
    throw WeightError(where + ": has no weight_map object");
  }
  std::map<std::string, std::string> expected;  // tensor -> shard
  std::set<std::string> shards;
  for (const auto& [name, file] : map->items()) {
    // A shard is a plain file name inside the model directory.
    if (!file.is_string() || file.get<std::string>().empty() ||
        file.get<std::string>().find('/') != std::string::npos || file.get<std::string>() == "..") {
      throw WeightError(where + ": tensor " + name + " maps to " + file.dump() +
                        ", which is not a file name in the model directory");
    }
    expected[name] = file.get<std::string>();
    shards.insert(file.get<std::string>());
  }
  if (shards.empty()) throw WeightError(where + ": weight_map is empty");
  for (const auto& shard : shards) source.add_file(shard);
  for (const auto& [name, shard] : expected) {
    const TensorInfo* t = source.find(name);
    if (t == nullptr || fs::path(t->file).filename() != shard) {
      throw WeightError(where + ": tensor " + name + " is listed in " + shard +
                        ", which does not hold it");
    }
  }
}

}  // namespace

std::unique_ptr<WeightSource> open_safetensors_dir(const fs::path& dir) {
  auto source = std::make_unique<SafetensorsDir>(dir);
  // An index means shards; a lone model.safetensors beside one would be a stale leftover.
  const fs::path index = dir / "model.safetensors.index.json";
  const fs::path single = dir / "model.safetensors";
  if (fs::is_regular_file(index)) {
    open_sharded(*source, index);
  } else if (fs::is_regular_file(single)) {
    source->add_file("model.safetensors");
  } else {
    throw WeightError("no model.safetensors or model.safetensors.index.json in " + dir.string());
  }
  return source;
}

}  // namespace xq
