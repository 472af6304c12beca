#include "engine/weights/safetensors_file.h"

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/weights/dtype_convert.h"

namespace xq {
namespace {

// The reference implementation refuses headers over 100 MB; a larger one is corruption.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

struct HeaderContext {
  std::string file;
  size_t data_size;  // bytes after the header
  [[noreturn]] void fail(const std::string& what) const { throw WeightError(file + ": " + what); }
  [[noreturn]] void fail(const std::string& tensor, const std::string& what) const {
    throw WeightError(file + ": tensor " + tensor + " " + what);
  }
};

DType parse_dtype(const HeaderContext& ctx, const std::string& name, const nlohmann::json& v) {
  if (!v.is_string()) ctx.fail(name, "has no dtype string");
  std::string s = v.get<std::string>();
  if (s == "F32") return DType::F32;
  if (s == "F16") return DType::F16;
  if (s == "BF16") return DType::BF16;
  ctx.fail(name, "has dtype " + s + ", which is not supported (supported: F32, F16, BF16)");
}

uint64_t parse_count(const HeaderContext& ctx, const std::string& name, const char* field,
                     const nlohmann::json& v) {
  if (!v.is_number_unsigned()) {
    ctx.fail(name, std::string("has a ") + field +
                       " entry that is not a non-negative integer: " + v.dump());
  }
  return v.get<uint64_t>();
}

TensorInfo parse_entry(const HeaderContext& ctx, const uint8_t* base, const std::string& name,
                       const nlohmann::json& e) {
  if (!e.is_object()) ctx.fail(name, "has a header entry that is not an object");
  TensorInfo t;
  t.name = name;
  t.file = ctx.file;
  auto dtype = e.find("dtype");
  auto shape = e.find("shape");
  auto offsets = e.find("data_offsets");
  if (dtype == e.end() || shape == e.end() || offsets == e.end()) {
    ctx.fail(name, "needs dtype, shape and data_offsets in its header entry");
  }
  t.dtype = parse_dtype(ctx, name, *dtype);
  if (!shape->is_array()) ctx.fail(name, "has a shape that is not a list");
  uint64_t bytes = dense_dtype_size(t.dtype);
  bool overflow = false;
  for (const auto& d : *shape) {
    uint64_t dim = parse_count(ctx, name, "shape", d);
    if (dim > static_cast<uint64_t>(INT64_MAX)) overflow = true;
    t.shape.push_back(static_cast<int64_t>(dim));
    overflow = overflow || __builtin_mul_overflow(bytes, dim, &bytes);
  }
  if (!offsets->is_array() || offsets->size() != 2) {
    ctx.fail(name, "has data_offsets that are not [begin, end]");
  }
  uint64_t begin = parse_count(ctx, name, "data_offsets", (*offsets)[0]);
  uint64_t end = parse_count(ctx, name, "data_offsets", (*offsets)[1]);
  std::string range = "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "]";
  if (begin > end || end > ctx.data_size) {
    ctx.fail(name, "has " + range + " outside the data section of " +
                       std::to_string(ctx.data_size) + " bytes (file truncated or corrupt)");
  }
  if (overflow || end - begin != bytes) {
    ctx.fail(name, "has " + range + " (" + std::to_string(end - begin) + " bytes), but its " +
                       dtype_name(t.dtype) + " shape needs " +
                       (overflow ? std::string("more than 2^64") : std::to_string(bytes)) +
                       " bytes");
  }
  t.data = base + begin;
  t.nbytes = end - begin;
  return t;
}

}  // namespace

std::vector<TensorInfo> read_safetensors_header(const MappedFile& file) {
  HeaderContext ctx{file.path().string(), 0};
  if (file.size() < 8) {
    ctx.fail("too short for a safetensors header (" + std::to_string(file.size()) + " bytes)");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file.data()[i];
  if (header_len > file.size() - 8 || header_len > kMaxHeaderBytes) {
    ctx.fail("header length " + std::to_string(header_len) + " does not fit the file of " +
             std::to_string(file.size()) + " bytes (truncated or not a safetensors file)");
  }
  const char* text = reinterpret_cast<const char*>(file.data() + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, text + header_len);
  } catch (const nlohmann::json::parse_error& e) {
    ctx.fail("invalid header JSON at byte " + std::to_string(e.byte) + " (" + e.what() + ")");
  } catch (const nlohmann::json::exception& e) {
    // Found by the fuzzer: a number beyond double's range (1e400) is out_of_range, not a
    // parse_error, and escaped as an error that named neither the file nor the header.
    ctx.fail(std::string("invalid header JSON (") + e.what() + ")");
  }
  if (!header.is_object()) ctx.fail("header is not a JSON object");
  ctx.data_size = file.size() - 8 - header_len;
  const uint8_t* base = file.data() + 8 + header_len;
  std::vector<TensorInfo> tensors;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;  // free-form strings (format, producer)
    tensors.push_back(parse_entry(ctx, base, name, entry));
  }
  return tensors;
}

}  // namespace xq
