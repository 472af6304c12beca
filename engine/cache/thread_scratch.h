// Scratch buffers for a format's attention: one set per thread, shared by every sequence that
// thread steps, instead of one set per sequence that keeps its size (that of its longest
// context) between steps outside the memory budget.
#pragma once

#include <vector>

namespace xq {

struct AttentionScratch {
  std::vector<float> k, v;  // fp32 K / V rows of the visible past and the new tokens
  std::vector<float> xs;    // the past's inputs in X space
  std::vector<float> z;     // a latent's rows
  std::vector<float> tmp, tmp2;
};

// The calling thread's scratch. A format's attend() takes it on entry and must not hold on to
// it across calls.
inline AttentionScratch& thread_scratch() {
  thread_local AttentionScratch s;
  return s;
}

}  // namespace xq
