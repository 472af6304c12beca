// GGUF container parsing. Layout: magic "GGUF", u32 version, u64 tensor count, u64 kv count,
// the key/values, the tensor infos, padding to general.alignment, then the tensor data.
#include "engine/weights/gguf_file.h"

#include <cstring>
#include <limits>

namespace xq {
namespace {

constexpr uint32_t kMaxDims = 4;         // ggml tensors have at most 4 dimensions
constexpr uint64_t kMaxNestedDepth = 8;  // arrays of arrays: no real file nests deeper

// A bounds-checked little-endian cursor over the mapped bytes.
class Cursor {
 public:
  Cursor(const uint8_t* base, size_t size, const std::string& file)
      : base_(base), size_(size), file_(file) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  [[noreturn]] void fail(const std::string& what) const {
    throw WeightError(file_ + ": " + what + " (at byte " + std::to_string(pos_) + " of " +
                      std::to_string(size_) + ")");
  }

  void need(uint64_t n, const char* what) const {
    if (n > remaining()) fail(std::string("truncated while reading ") + what);
  }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    uint64_t n = read<uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(base_ + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  const uint8_t* base_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& file_;
};

// Smallest encoding of one value of `t`, to reject absurd array counts before allocating.
uint64_t min_value_bytes(GgufType t) {
  switch (t) {
    case GgufType::UInt8:
    case GgufType::Int8:
    case GgufType::Bool:
      return 1;
    case GgufType::UInt16:
    case GgufType::Int16:
      return 2;
    case GgufType::UInt32:
    case GgufType::Int32:
    case GgufType::Float32:
      return 4;
    case GgufType::String:
    case GgufType::UInt64:
    case GgufType::Int64:
    case GgufType::Float64:
      return 8;
    case GgufType::Array:
      return 12;
  }
  return 1;
}

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::Float64); }

// Reads one scalar of type `t` into `out` (its i/u/f/s fields).
void read_scalar(Cursor& c, GgufType t, GgufValue& out) {
  switch (t) {
    case GgufType::UInt8:
      out.i = c.read<uint8_t>("uint8");
      break;
    case GgufType::Int8:
      out.i = c.read<int8_t>("int8");
      break;
    case GgufType::UInt16:
      out.i = c.read<uint16_t>("uint16");
      break;
    case GgufType::Int16:
      out.i = c.read<int16_t>("int16");
      break;
    case GgufType::UInt32:
      out.i = c.read<uint32_t>("uint32");
      break;
    case GgufType::Int32:
      out.i = c.read<int32_t>("int32");
      break;
    case GgufType::Float32:
      out.f = c.read<float>("float32");
      break;
    case GgufType::Float64:
      out.f = c.read<double>("float64");
      break;
    case GgufType::UInt64:
      out.u = c.read<uint64_t>("uint64");
      out.i = static_cast<int64_t>(out.u);
      break;
    case GgufType::Int64:
      out.i = c.read<int64_t>("int64");
      break;
    case GgufType::Bool: {
      uint8_t b = c.read<uint8_t>("bool");
      if (b > 1) c.fail("bool value " + std::to_string(b) + " is neither 0 nor 1");
      out.i = b;
      break;
    }
    case GgufType::String:
      out.s = c.read_string("string");
      break;
    case GgufType::Array:
      c.fail("array where a scalar was expected");
  }
  if (t != GgufType::UInt64) out.u = static_cast<uint64_t>(out.i);
}

void read_value(Cursor& c, GgufType t, GgufValue& out, uint64_t depth) {
  out.type = t;
  if (t != GgufType::Array) {
    read_scalar(c, t, out);
    return;
  }
  if (depth >= kMaxNestedDepth) c.fail("arrays nested too deeply");
  uint32_t et = c.read<uint32_t>("array element type");
  if (!valid_type(et)) c.fail("unknown array element type " + std::to_string(et));
  out.elem_type = static_cast<GgufType>(et);
  uint64_t n = c.read<uint64_t>("array length");
  if (n > c.remaining() / min_value_bytes(out.elem_type)) {
    c.fail("array of " + std::to_string(n) + " elements runs past the end of the file");
  }
  GgufValue tmp;
  switch (out.elem_type) {
    case GgufType::String:
      out.strings.reserve(n);
      for (uint64_t k = 0; k < n; ++k) out.strings.push_back(c.read_string("string array"));
      break;
    case GgufType::Float32:
    case GgufType::Float64:
      out.floats.reserve(n);
      for (uint64_t k = 0; k < n; ++k) {
        read_scalar(c, out.elem_type, tmp);
        out.floats.push_back(tmp.f);
      }
      break;
    case GgufType::Array:
      out.items.resize(n);
      for (uint64_t k = 0; k < n; ++k) read_value(c, GgufType::Array, out.items[k], depth + 1);
      break;
    default:
      out.ints.reserve(n);
      for (uint64_t k = 0; k < n; ++k) {
        read_scalar(c, out.elem_type, tmp);
        out.ints.push_back(tmp.i);
      }
  }
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::UInt8:
      return "uint8";
    case GgufType::Int8:
      return "int8";
    case GgufType::UInt16:
      return "uint16";
    case GgufType::Int16:
      return "int16";
    case GgufType::UInt32:
      return "uint32";
    case GgufType::Int32:
      return "int32";
    case GgufType::Float32:
      return "float32";
    case GgufType::Bool:
      return "bool";
    case GgufType::String:
      return "string";
    case GgufType::Array:
      return "array";
    case GgufType::UInt64:
      return "uint64";
    case GgufType::Int64:
      return "int64";
    case GgufType::Float64:
      return "float64";
  }
  return "?";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::UInt8:
    case GgufType::Int8:
    case GgufType::UInt16:
    case GgufType::Int16:
    case GgufType::UInt32:
    case GgufType::Int32:
    case GgufType::UInt64:
    case GgufType::Int64:
    case GgufType::Bool:
      return true;
    default:
      return false;
  }
}

bool GgufValue::is_float() const { return type == GgufType::Float32 || type == GgufType::Float64; }

size_t GgufValue::array_size() const {
  return ints.size() + floats.size() + strings.size() + items.size();
}

int64_t GgufTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

std::vector<int64_t> GgufTensor::hf_shape() const { return {ne.rbegin(), ne.rend()}; }

GgufFile::GgufFile(const std::filesystem::path& path) : path_(path), map_(path) { parse(); }

void GgufFile::parse() {
  const std::string file = path_.string();
  const uint8_t* base = map_.data();
  const size_t size = map_.size();
  Cursor c(base, size, file);
  uint32_t magic = c.read<uint32_t>("magic");
  if (std::memcmp(&magic, "GGUF", 4) != 0) c.fail("not a GGUF file (bad magic)");
  version_ = c.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3) {
    c.fail("unsupported GGUF version " + std::to_string(version_) + " (need 2 or 3)");
  }
  uint64_t n_tensors = c.read<uint64_t>("tensor count");
  uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each key/value takes at least 13 bytes and each tensor info at least 24.
  if (n_kv > c.remaining() / 13) c.fail("metadata count " + std::to_string(n_kv) + " too large");
  if (n_tensors > c.remaining() / 24) {
    c.fail("tensor count " + std::to_string(n_tensors) + " too large");
  }

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.read_string("metadata key");
    uint32_t t = c.read<uint32_t>("metadata value type");
    if (!valid_type(t)) c.fail("metadata " + key + ": unknown value type " + std::to_string(t));
    GgufValue v;
    read_value(c, static_cast<GgufType>(t), v, 0);
    if (!kv_.emplace(key, std::move(v)).second) c.fail("duplicate metadata key " + key);
  }

  if (const GgufValue* a = find("general.alignment")) {
    if (!a->is_integer() || a->i <= 0 || (a->i & (a->i - 1)) != 0) {
      throw WeightError(file + ": general.alignment must be a positive power of two");
    }
    alignment_ = static_cast<uint64_t>(a->i);
  }

  tensors_.reserve(n_tensors);
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensor t;
    t.name = c.read_string("tensor name");
    uint32_t n_dims = c.read<uint32_t>("tensor dimension count");
    if (n_dims == 0 || n_dims > kMaxDims) {
      c.fail("tensor " + t.name + ": " + std::to_string(n_dims) + " dimensions");
    }
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = c.read<uint64_t>("tensor dimension");
      if (ne == 0 || ne > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()) * 64) {
        c.fail("tensor " + t.name + ": dimension " + std::to_string(ne) + " out of range");
      }
      t.ne.push_back(static_cast<int64_t>(ne));
    }
    t.type = c.read<uint32_t>("tensor type");
    t.offset = c.read<uint64_t>("tensor offset");
    if (tensor_index_.count(t.name)) c.fail("duplicate tensor " + t.name);
    tensor_index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  uint64_t data_start = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (data_start > size) c.fail("data section starts past the end of the file");
  const uint64_t data_size = size - data_start;

  for (GgufTensor& t : tensors_) {
    int64_t block_elems = 0, block_bytes = 0;
    if (!ggml_block_layout(t.type, &block_elems, &block_bytes)) {
      throw WeightError(file + ": tensor " + t.name + " has unknown ggml type " +
                        std::to_string(t.type));
    }
    if (t.ne[0] % block_elems != 0) {
      throw WeightError(file + ": tensor " + t.name + ": row length " + std::to_string(t.ne[0]) +
                        " is not a multiple of the " + ggml_type_name(t.type) + " block size " +
                        std::to_string(block_elems));
    }
    if (t.offset % alignment_ != 0) {
      throw WeightError(file + ": tensor " + t.name + ": offset " + std::to_string(t.offset) +
                        " is not a multiple of the alignment " + std::to_string(alignment_));
    }
    // Each dimension is below 2^37 and the running product is checked against the file size
    // (below 2^64) before every multiplication, so the 128-bit product cannot overflow.
    const uint64_t room = t.offset > data_size ? 0 : data_size - t.offset;
    unsigned __int128 bytes = static_cast<unsigned __int128>(t.ne[0] / block_elems) * block_bytes;
    for (size_t d = 1; d < t.ne.size() && bytes <= room; ++d) {
      bytes *= static_cast<uint64_t>(t.ne[d]);
    }
    if (t.offset > data_size || bytes > room) {
      throw WeightError(file + ": tensor " + t.name + " (offset " + std::to_string(t.offset) +
                        ") runs past the end of the file (truncated?)");
    }
    t.nbytes = static_cast<size_t>(bytes);
    t.data = base + data_start + t.offset;
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufTensor* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
[[noreturn]] void wrong_type(const std::filesystem::path& p, const std::string& key,
                             const GgufValue& v, const char* want) {
  throw WeightError(p.string() + ": metadata " + key + " is " + gguf_type_name(v.type) +
                    ", expected " + want);
}
}  // namespace

std::optional<int64_t> GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_integer() || v->type == GgufType::Bool) wrong_type(path_, key, *v, "an integer");
  if (v->type == GgufType::UInt64 && v->u > static_cast<uint64_t>(INT64_MAX)) {
    throw WeightError(path_.string() + ": metadata " + key + " is out of range");
  }
  return v->i;
}

std::optional<double> GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->is_float()) return v->f;
  if (v->is_integer() && v->type != GgufType::Bool) return static_cast<double>(v->i);
  wrong_type(path_, key, *v, "a number");
}

std::optional<bool> GgufFile::get_bool(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::Bool) wrong_type(path_, key, *v, "bool");
  return v->i != 0;
}

std::optional<std::string> GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::String) wrong_type(path_, key, *v, "string");
  return v->s;
}

int64_t GgufFile::require_int(const std::string& key) const {
  if (auto v = get_int(key)) return *v;
  throw WeightError(path_.string() + ": metadata " + key + " is missing");
}

double GgufFile::require_float(const std::string& key) const {
  if (auto v = get_float(key)) return *v;
  throw WeightError(path_.string() + ": metadata " + key + " is missing");
}

std::string GgufFile::require_string(const std::string& key) const {
  if (auto v = get_string(key)) return *v;
  throw WeightError(path_.string() + ": metadata " + key + " is missing");
}

}  // namespace xq
