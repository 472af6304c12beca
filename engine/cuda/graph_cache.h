// GraphCache: CUDA graphs of a step's device work, captured once per shape key and replayed, so a
// small decode step costs one launch instead of hundreds (at batch 1 the host's launch overhead,
// ~10 us per kernel, is larger than the GPU's work). A key must fix every launch parameter the
// captured work takes from the host; device buffers must stay where they were at capture
// (clear() when one moves).
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <functional>
#include <map>

#include "kernels/cuda/cuda_ops.h"

namespace xq::cuda {

class GraphCache {
 public:
  using Key = std::array<int, 4>;
  GraphCache() = default;
  GraphCache(const GraphCache&) = delete;
  GraphCache& operator=(const GraphCache&) = delete;
  ~GraphCache() { clear(); }

  // Runs `work` on `stream`: eagerly the first time a key is seen (one-time set-up such as kernel
  // attributes and library heuristics stays out of the capture), through the graph captured for
  // `key` from then on.
  void run(const Key& key, cudaStream_t stream, const std::function<void()>& work) {
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
      graphs_.emplace(key, nullptr);
      work();
      return;
    }
    if (it->second == nullptr) {
      cudaGraph_t graph = nullptr;
      check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "graph capture");
      try {
        work();
      } catch (...) {
        cudaStreamEndCapture(stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        throw;
      }
      check(cudaStreamEndCapture(stream, &graph), "graph capture end");
      cudaGraphExec_t exec = nullptr;
      const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      check(e, "graph instantiate");
      it->second = exec;
    }
    check(cudaGraphLaunch(it->second, stream), "graph launch");
  }
  void clear() {
    for (auto& [key, exec] : graphs_)
      if (exec) cudaGraphExecDestroy(exec);
    graphs_.clear();
  }
  size_t size() const { return graphs_.size(); }

 private:
  std::map<Key, cudaGraphExec_t> graphs_;
};

}  // namespace xq::cuda
