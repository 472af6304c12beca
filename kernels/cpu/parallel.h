// parallel_for: splits [0, n) into contiguous chunks over up to `threads` threads (the caller and
// workers started once).
#pragma once

#include <functional>

namespace xq {

// Calls fn(begin, end) on disjoint chunks covering [0, n); runs inline when threads <= 1 or
// n < 2 * min_chunk (waking workers costs microseconds, more than small work), and inline when
// called from inside another parallel_for or while another thread runs one.
void parallel_for(int n, int threads, int min_chunk, const std::function<void(int, int)>& fn);

// The number of hardware threads (at least 1).
int hardware_threads();

}  // namespace xq
