// Block layouts of the ggml tensor types (elements and bytes per block) and their DType mapping.
#include "engine/weights/gguf_file.h"

namespace xq {

namespace {
struct Layout {
  GgmlType type;
  const char* name;
  int64_t block_elems;
  int64_t block_bytes;
};

// Bytes per block follow from the ggml block structs: f16 scale(s) plus packed quants.
constexpr Layout kLayouts[] = {
    {GgmlType::F32, "F32", 1, 4},
    {GgmlType::F16, "F16", 1, 2},
    {GgmlType::BF16, "BF16", 1, 2},
    {GgmlType::Q4_0, "Q4_0", 32, 2 + 16},
    {GgmlType::Q4_1, "Q4_1", 32, 2 + 2 + 16},
    {GgmlType::Q5_0, "Q5_0", 32, 2 + 4 + 16},
    {GgmlType::Q5_1, "Q5_1", 32, 2 + 2 + 4 + 16},
    {GgmlType::Q8_0, "Q8_0", 32, 2 + 32},
    {GgmlType::Q8_1, "Q8_1", 32, 4 + 32},
    {GgmlType::Q2_K, "Q2_K", 256, 16 + 64 + 2 + 2},
    {GgmlType::Q3_K, "Q3_K", 256, 32 + 64 + 12 + 2},
    {GgmlType::Q4_K, "Q4_K", 256, 2 + 2 + 12 + 128},
    {GgmlType::Q5_K, "Q5_K", 256, 2 + 2 + 12 + 32 + 128},
    {GgmlType::Q6_K, "Q6_K", 256, 128 + 64 + 16 + 2},
    {GgmlType::Q8_K, "Q8_K", 256, 4 + 256 + 32},
    {GgmlType::IQ4_NL, "IQ4_NL", 32, 2 + 16},
    {GgmlType::IQ4_XS, "IQ4_XS", 256, 2 + 2 + 4 + 128},
};

const Layout* layout(uint32_t type) {
  for (const Layout& l : kLayouts) {
    if (static_cast<uint32_t>(l.type) == type) return &l;
  }
  return nullptr;
}
}  // namespace

bool ggml_block_layout(uint32_t type, int64_t* block_elems, int64_t* block_bytes) {
  const Layout* l = layout(type);
  if (!l) return false;
  *block_elems = l->block_elems;
  *block_bytes = l->block_bytes;
  return true;
}

std::string ggml_type_name(uint32_t type) {
  const Layout* l = layout(type);
  return l ? l->name : "ggml type " + std::to_string(type);
}

std::optional<DType> dtype_from_ggml(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32:
      return DType::F32;
    case GgmlType::F16:
      return DType::F16;
    case GgmlType::BF16:
      return DType::BF16;
    case GgmlType::Q4_0:
      return DType::Q4_0;
    case GgmlType::Q5_0:
      return DType::Q5_0;
    case GgmlType::Q8_0:
      return DType::Q8_0;
    case GgmlType::Q4_K:
      return DType::Q4_K;
    case GgmlType::Q5_K:
      return DType::Q5_K;
    case GgmlType::Q6_K:
      return DType::Q6_K;
    case GgmlType::Q4_1:
      return DType::Q4_1;
    case GgmlType::Q5_1:
      return DType::Q5_1;
    case GgmlType::Q2_K:
      return DType::Q2_K;
    case GgmlType::Q3_K:
      return DType::Q3_K;
    case GgmlType::IQ4_NL:
      return DType::IQ4_NL;
    case GgmlType::IQ4_XS:
      return DType::IQ4_XS;
    default:
      return std::nullopt;
  }
}

}  // namespace xq
