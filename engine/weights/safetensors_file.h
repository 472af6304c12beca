// Reading the header of one .safetensors file: the tensors it holds, pointing into its map.
#pragma once

#include <vector>

#include "engine/weights/mapped_file.h"
#include "engine/weights/weight_source.h"

namespace xq {

// Layout: 8-byte little-endian header length H, H bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data, with
// offsets relative to its start. Throws WeightError naming the file (and the tensor, where one is
// at fault) for a truncated or corrupt file, an unsupported dtype, or offsets that disagree with
// the shape.
std::vector<TensorInfo> read_safetensors_header(const MappedFile& file);

}  // namespace xq
