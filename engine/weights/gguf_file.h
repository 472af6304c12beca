// GgufFile: a memory-mapped GGUF (v2/v3) container: metadata key/values and tensor descriptors,
// with every offset and length checked against the file size.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/weights/mapped_file.h"
#include "engine/weights/weight_source.h"

namespace xq {

// Value types of GGUF metadata, numbered as in the file.
enum class GgufType : uint32_t {
  UInt8 = 0,
  Int8 = 1,
  UInt16 = 2,
  Int16 = 3,
  UInt32 = 4,
  Int32 = 5,
  Float32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  UInt64 = 10,
  Int64 = 11,
  Float64 = 12,
};
const char* gguf_type_name(GgufType t);

// One metadata value. Scalars live in the field of their kind; arrays fill the vector of the
// element kind (integers and bools in `ints`, floats in `floats`, strings in `strings`, nested
// arrays in `items`).
struct GgufValue {
  GgufType type = GgufType::UInt8;
  GgufType elem_type = GgufType::UInt8;  // element type when type == Array
  int64_t i = 0;                         // integer and bool scalars
  uint64_t u = 0;                        // UInt64 scalars keep their full range here
  double f = 0.0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  std::vector<GgufValue> items;

  bool is_integer() const;  // any integer or bool scalar
  bool is_float() const;
  size_t array_size() const;
};

// ggml tensor types the engine knows the block layout of (ids as in ggml).
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ4_NL = 20,
  IQ4_XS = 23,
  BF16 = 30,
};
// Elements per block and bytes per block; false for a type id without a known layout.
bool ggml_block_layout(uint32_t type, int64_t* block_elems, int64_t* block_bytes);
std::string ggml_type_name(uint32_t type);
// The DType for a ggml type the converters implement, or nullopt.
std::optional<DType> dtype_from_ggml(uint32_t type);

struct GgufTensor {
  std::string name;
  std::vector<int64_t> ne;  // GGUF order: ne[0] is the contiguous (innermost) dimension
  uint32_t type = 0;        // ggml type id
  uint64_t offset = 0;      // relative to the data section
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t numel() const;
  // Row-major shape, outermost first (ne reversed), as Hugging Face writes it.
  std::vector<int64_t> hf_shape() const;
};

class GgufFile {
 public:
  // Maps and parses `path`. Throws WeightError naming the file and what is wrong.
  explicit GgufFile(const std::filesystem::path& path);
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  size_t file_size() const { return map_.size(); }

  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;
  // Typed reads; the optional forms give nullopt when the key is absent and throw WeightError
  // when it has the wrong type. `require_*` also throw when it is absent.
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;  // accepts integers too
  std::optional<bool> get_bool(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
  int64_t require_int(const std::string& key) const;
  double require_float(const std::string& key) const;
  std::string require_string(const std::string& key) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(const std::string& name) const;

 private:
  void parse();

  std::filesystem::path path_;
  MappedFile map_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace xq
