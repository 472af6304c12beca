// parallel_for: splits [0, n) into contiguous chunks over up to `threads` std::threads.
#pragma once

#include <functional>

namespace xq {

// Calls fn(begin, end) on disjoint chunks covering [0, n); runs inline when threads <= 1 or
// n < 2 * min_chunk (spawning costs tens of microseconds, more than small work).
void parallel_for(int n, int threads, int min_chunk, const std::function<void(int, int)>& fn);

// The number of hardware threads (at least 1).
int hardware_threads();

}  // namespace xq
