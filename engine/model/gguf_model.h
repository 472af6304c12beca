// Loading a GGUF checkpoint (weights, config from metadata, tokenizer) into a LoadedModel.
#pragma once

#include <filesystem>

#include "engine/model/model.h"

namespace xq {

LoadedModel load_gguf_model(const std::filesystem::path& path, const EngineOptions& opts);

}  // namespace xq
