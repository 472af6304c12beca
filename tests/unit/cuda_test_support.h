// Support of the GPU kernel tests: a fixture that skips without a CUDA GPU and owns a stream, an
// owning device buffer, and the error measures the tests share.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <vector>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/gpu_probe.h"

namespace xq::cuda::test {

// A device array of n T, freed on destruction; filled from and read back to host vectors.
template <typename T>
class DeviceBuf {
 public:
  explicit DeviceBuf(size_t n) : n_(n) {
    check(cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)),
          "test cudaMalloc");
  }
  explicit DeviceBuf(const std::vector<T>& host) : DeviceBuf(host.size()) { upload(host); }
  DeviceBuf(const DeviceBuf&) = delete;
  DeviceBuf& operator=(const DeviceBuf&) = delete;
  ~DeviceBuf() { cudaFree(p_); }

  void upload(const std::vector<T>& host) {
    check(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), "test upload");
  }
  // Waits for all work on the device first, so a kernel's result is complete.
  std::vector<T> download() const {
    check(cudaDeviceSynchronize(), "test sync");
    std::vector<T> host(n_);
    check(cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), "test download");
    return host;
  }
  T* get() const { return p_; }

 private:
  T* p_ = nullptr;
  size_t n_;
};

// Every GPU test derives from this: no GPU (or no driver) skips the test.
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (xq::probe_gpus().empty()) {
      GTEST_SKIP() << "no CUDA GPU: cudaGetDeviceCount finds no usable device";
    }
    check(cudaStreamCreate(&stream_), "test cudaStreamCreate");
  }
  void TearDown() override {
    if (stream_) cudaStreamDestroy(stream_);
  }
  cudaStream_t stream_ = nullptr;
};

// ||a - ref|| / ||ref|| in double (the sizes must match).
template <typename A, typename B>
double rel_err(const std::vector<A>& a, const std::vector<B>& ref) {
  EXPECT_EQ(a.size(), ref.size());
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size() && i < ref.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(ref[i]);
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / (den > 0.0 ? den : 1.0));
}

inline float bf16_round(float f) { return __bfloat162float(__float2bfloat16_rn(f)); }
inline uint16_t bf16_bits(bf16 b) {
  uint16_t u;
  std::memcpy(&u, &b, 2);
  return u;
}
inline std::vector<float> bf16_to_floats(const std::vector<bf16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __bfloat162float(v[i]);
  return out;
}

}  // namespace xq::cuda::test
