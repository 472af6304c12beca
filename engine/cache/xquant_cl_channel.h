// The per-channel variant of XQuant-CL's sequence state: deltas quantized per channel in blocks
// of G tokens, the newest < G tokens of every layer kept as X in fp16 until their block fills.
#pragma once

#include <memory>

#include "engine/cache/cache_format.h"
#include "engine/cache/xquant_cl_cache.h"

namespace xq {

std::unique_ptr<SequenceCache> new_cl_channel_sequence(const ModelConfig& cfg,
                                                       const KvProjector& proj,
                                                       const XQuantCLOptions& opts,
                                                       std::shared_ptr<const ClPlan> plan);

}  // namespace xq
