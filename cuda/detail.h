// Internal helpers for weft's CUDA sources: error checks, the current stream, launch sizes.
//
// Only files under cuda/ include this (it pulls in the CUDA runtime headers); nothing
// installed depends on it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../tensor/error.h"
#include "cuda.h"

namespace weft::cuda::detail {

// Throws weft::Error "<op>: <call>: <message>". `call` may be a whole expression; only
// the function name before its '(' is kept.
[[noreturn]] void fail(const char* op, const char* call, const char* message);

inline void check(cudaError_t err, const char* op, const char* call) {
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so the next call starts clean
    fail(op, call, cudaGetErrorString(err));
  }
}

// The calling thread's current stream on the current device (or on `device`).
cudaStream_t stream();
cudaStream_t stream(int device);

// True while the current stream is being captured into a CUDA graph: code that would
// synchronise with the host (reading a value back, cudaMalloc) must not run then.
bool capturing();

// Threads per block for simple element-wise kernels, and the grid that covers n items
// with a grid-stride loop (capped: each thread then handles several items).
inline constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 65536) b = 65536;
  return static_cast<unsigned>(b);
}

}  // namespace weft::cuda::detail

// WEFT_CUDA_CHECK("conv2d", cudaMemsetAsync(p, 0, n, s)) -> "conv2d: cudaMemsetAsync: ..."
#define WEFT_CUDA_CHECK(op, expr) ::weft::cuda::detail::check((expr), (op), #expr)
// After a kernel launch: reports a bad launch configuration naming the op.
#define WEFT_CUDA_LAUNCH_CHECK(op) ::weft::cuda::detail::check(cudaGetLastError(), (op), "kernel launch")

namespace weft::cuda::detail {
// Graph memory pools (allocator.cpp, used by graph.cpp). While a pool is bound to a
// device and stream, allocations on that stream come from it; blocks freed during the
// capture go back to it, so the graph's replays own every block they touch.
int create_graph_pool();
void bind_graph_pool(int device, cudaStream_t stream, int pool);  // pool 0 unbinds
// Called when the graph dies: its blocks (free and, once freed, live) return to the
// ordinary cache.
void release_graph_pool(int pool);
}  // namespace weft::cuda::detail
