#include "engine/model/gguf_model.h"

namespace xq {

// Replaced by the GGUF loader; until then a .gguf path is a clear configuration error.
LoadedModel load_gguf_model(const std::filesystem::path& path, const EngineOptions&) {
  throw ConfigError("GGUF models land with GGUF support: cannot load " + path.string());
}

}  // namespace xq
