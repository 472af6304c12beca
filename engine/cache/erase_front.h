// Dropping a sliding-window layer's oldest rows from a vector.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace xq {

// Erases the first n elements, and gives the memory back once the vector holds less than half
// its capacity (as after a long prefill chunk), so that what a sequence really holds stays near
// what the memory budget counts for it.
template <typename T>
void erase_front(std::vector<T>& v, size_t n) {
  v.erase(v.begin(), v.begin() + std::min(n, v.size()));
  if (v.capacity() > 2 * v.size() + 4096 / sizeof(T)) v.shrink_to_fit();
}

}  // namespace xq
