// The dtype-independent parts of WeightSource: names, sizes, lookups with errors, fp32 loads.
#include "engine/weights/weight_source.h"

#include <string>

namespace xq {
namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::Q8_0:
      return "Q8_0";
    case DType::Q4_0:
      return "Q4_0";
    case DType::Q5_0:
      return "Q5_0";
    case DType::Q4_K:
      return "Q4_K";
    case DType::Q5_K:
      return "Q5_K";
    case DType::Q6_K:
      return "Q6_K";
    case DType::Q3_K:
      return "Q3_K";
    case DType::Q2_K:
      return "Q2_K";
    case DType::Q4_1:
      return "Q4_1";
    case DType::Q5_1:
      return "Q5_1";
    case DType::IQ4_NL:
      return "IQ4_NL";
    case DType::IQ4_XS:
      return "IQ4_XS";
  }
  return "unknown";
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const TensorInfo& WeightSource::get(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (t == nullptr) throw WeightError("tensor " + name + " not found in " + describe());
  return *t;
}

std::vector<float> WeightSource::load_f32(const std::string& name,
                                          const std::vector<int64_t>& shape) const {
  const TensorInfo& t = get(name);
  if (t.shape != shape) {
    throw WeightError(t.file + ": tensor " + name + " has shape " + shape_str(t.shape) +
                      ", expected " + shape_str(shape));
  }
  std::vector<float> out(static_cast<size_t>(t.numel()));
  convert_to_f32(t, out.data());
  return out;
}

const TensorInfo* TensorTable::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::string> TensorTable::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, t] : tensors_) out.push_back(name);
  return out;
}

const TensorInfo* TensorTable::insert(TensorInfo t) {
  std::string name = t.name;
  auto [it, inserted] = tensors_.try_emplace(std::move(name), std::move(t));
  return inserted ? nullptr : &it->second;
}

}  // namespace xq
