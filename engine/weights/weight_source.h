// WeightSource: named tensors of a checkpoint (safetensors or GGUF), memory-mapped, read as fp32.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace xq {

struct WeightError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class DType {
  F32,
  F16,
  BF16,
  Q8_0,
  Q4_0,
  Q4_K,
  Q5_K,
  Q6_K,
  Q5_0,
  Q3_K,
  Q2_K,
  Q4_1,
  Q5_1,
  IQ4_NL,
  IQ4_XS
};
const char* dtype_name(DType t);

struct TensorInfo {
  std::string name;             // Hugging Face name, e.g. "model.layers.0.self_attn.q_proj.weight"
  DType dtype = DType::F32;
  std::vector<int64_t> shape;   // row-major, outermost first (HF convention: [out, in] for Linear)
  const uint8_t* data = nullptr;  // into the memory map
  size_t nbytes = 0;
  std::string file;             // the file it lives in, for error messages
  int64_t numel() const;
};

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // nullptr when absent.
  virtual const TensorInfo* find(const std::string& name) const = 0;
  virtual std::vector<std::string> names() const = 0;

  // Where tensors are looked up, for error messages: "DIR (checked files a, b)" or a file path.
  virtual std::string describe() const { return "the weight source"; }

  bool has(const std::string& name) const { return find(name) != nullptr; }
  // Like find(), but throws WeightError "tensor NAME not found in <describe()>" when absent.
  const TensorInfo& get(const std::string& name) const;
  // An fp32 copy. Throws WeightError naming the file and tensor when it is missing, its shape
  // differs from `shape`, or its dtype cannot be converted.
  std::vector<float> load_f32(const std::string& name, const std::vector<int64_t>& shape) const;
};

// A WeightSource over a table of tensors that its subclass fills once, at open.
class TensorTable : public WeightSource {
 public:
  const TensorInfo* find(const std::string& name) const override;
  std::vector<std::string> names() const override;  // sorted

 protected:
  // Adds t; when its name is taken, adds nothing and returns the tensor holding it.
  const TensorInfo* insert(TensorInfo t);

 private:
  std::map<std::string, TensorInfo> tensors_;
};

// A Hugging Face model directory: model.safetensors, or model-0000x-of-0000y.safetensors with
// model.safetensors.index.json.
std::unique_ptr<WeightSource> open_safetensors_dir(const std::filesystem::path& dir);

// Converts all t.numel() elements of `t` to fp32 into `out` (dequantizing block formats via
// engine/weights/dequant.h). Throws WeightError naming the file and tensor when it cannot.
void convert_to_f32(const TensorInfo& t, float* out);

}  // namespace xq
