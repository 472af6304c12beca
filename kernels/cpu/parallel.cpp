#include "kernels/cpu/parallel.h"

#include <algorithm>
#include <exception>
#include <thread>
#include <vector>

namespace xq {

// Asked once: hardware_concurrency() reads /sys on every call, and the attention asks per layer.
int hardware_threads() {
  static const int n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return n;
}

void parallel_for(int n, int threads, int min_chunk, const std::function<void(int, int)>& fn) {
  if (n <= 0) return;
  const int t = std::min(threads, n / std::max(1, min_chunk));
  if (t <= 1) {
    fn(0, n);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(t);
  for (int i = 0; i < t; ++i) {
    const int b = static_cast<int>(static_cast<long>(n) * i / t);
    const int e = static_cast<int>(static_cast<long>(n) * (i + 1) / t);
    pool.emplace_back([&, i, b, e] {
      try {
        fn(b, e);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (auto& err : errors) {
    if (err) std::rethrow_exception(err);
  }
}

}  // namespace xq
