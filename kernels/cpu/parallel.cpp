#include "kernels/cpu/parallel.h"

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace xq {

// Asked once: hardware_concurrency() reads /sys on every call, and the attention asks per layer.
int hardware_threads() {
  static const int n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return n;
}

namespace {

// Workers started once and parked between calls: starting threads per call cost tens of
// microseconds each, several times per layer. One parallel region runs at a time; a call made
// while one runs (another thread's, or a nested one from inside fn) runs inline instead.
class WorkerPool {
 public:
  explicit WorkerPool(int workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this, i] { loop(i); });
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  int workers() const { return static_cast<int>(threads_.size()); }

  // Runs fn on chunk 0 in the caller and chunks 1..t-1 on workers 0..t-2; false (nothing run)
  // when another region holds the pool.
  bool run(int n, int t, const std::function<void(int, int)>& fn) {
    // A worker, or the caller of a running region (from inside fn), never waits on the pool.
    if (in_region_) return false;
    std::unique_lock<std::mutex> region(region_, std::try_to_lock);
    if (!region.owns_lock()) return false;
    std::vector<std::exception_ptr> errors(t);
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn;
      n_ = n;
      t_ = t;
      errors_ = &errors;
      pending_ = t - 1;
      ++generation_;
    }
    wake_.notify_all();
    in_region_ = true;
    chunk(0, errors);
    in_region_ = false;
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [this] { return pending_ == 0; });
    fn_ = nullptr;
    lock.unlock();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
    return true;
  }

 private:
  void chunk(int i, std::vector<std::exception_ptr>& errors) {
    const int b = static_cast<int>(static_cast<long>(n_) * i / t_);
    const int e = static_cast<int>(static_cast<long>(n_) * (i + 1) / t_);
    try {
      (*fn_)(b, e);
    } catch (...) {
      errors[i] = std::current_exception();
    }
  }

  void loop(int index) {
    in_region_ = true;
    uint64_t seen = 0;
    for (;;) {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (index + 1 >= t_) continue;  // this region needs fewer workers
      std::vector<std::exception_ptr>& errors = *errors_;
      lock.unlock();
      chunk(index + 1, errors);
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex region_;  // held by the caller for a whole region
  std::mutex mu_;      // guards the region's description below
  std::condition_variable wake_, done_;
  const std::function<void(int, int)>* fn_ = nullptr;
  int n_ = 0, t_ = 0, pending_ = 0;
  std::vector<std::exception_ptr>* errors_ = nullptr;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
  static thread_local bool in_region_;  // this thread is a worker or runs a region's chunk
};

thread_local bool WorkerPool::in_region_ = false;

WorkerPool& pool() {
  static WorkerPool p(hardware_threads() - 1);
  return p;
}

}  // namespace

void parallel_for(int n, int threads, int min_chunk, const std::function<void(int, int)>& fn) {
  if (n <= 0) return;
  int t = std::min(threads, n / std::max(1, min_chunk));
  t = std::min(t, pool().workers() + 1);
  if (t <= 1 || !pool().run(n, t, fn)) fn(0, n);
}

}  // namespace xq
