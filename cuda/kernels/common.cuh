// Shared pieces of weft's CUDA kernels: strided indexing, launch helpers, warp reductions.
//
// Internal to cuda/kernels/ (pulls in CUDA headers); nothing installed includes it.
//
// The one idea here is OffsetCalc: kernels see every tensor as a flat index space over
// the output's shape, and OffsetCalc turns flat index i into each operand's element
// offset, whatever its strides (a stride of 0 is a broadcast). Before it is built the
// host merges dims that every operand walks contiguously -- exactly like make_plan in
// tensor/cpu/loops.h -- so a contiguous tensor is one dim and pays one division, and
// "all operands contiguous" becomes a test the host makes once to pick a faster kernel.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <type_traits>

#include "../../tensor/tensor.h"
#include "../detail.h"

namespace weft::cuda::kern {

inline constexpr int kMaxDims = ::weft::kMaxDims;

// Flat index -> element offsets of N operands. Passed to kernels by value (it lives in
// the kernel's parameter space, so every thread reads it from the constant cache).
template <int N>
struct OffsetCalc {
  int ndim = 0;                   // after merging; 0 means a single element
  bool narrow = true;             // fewer than 2^31 elements: 32-bit divisions suffice
  int64_t size[kMaxDims];         // innermost dim first
  int64_t stride[kMaxDims][N];    // in elements, innermost dim first

  __host__ __device__ std::array<int64_t, N> get(int64_t i) const {
    std::array<int64_t, N> off{};
    if (narrow) {  // a 32-bit division is several times cheaper than a 64-bit one
      uint32_t j = static_cast<uint32_t>(i);
#pragma unroll
      for (int d = 0; d < kMaxDims; ++d) {
        if (d == ndim) break;
        const uint32_t s = static_cast<uint32_t>(size[d]), q = j / s, idx = j - q * s;
        j = q;
#pragma unroll
        for (int k = 0; k < N; ++k) off[k] += int64_t(idx) * stride[d][k];
      }
      return off;
    }
#pragma unroll
    for (int d = 0; d < kMaxDims; ++d) {
      if (d == ndim) break;
      const int64_t q = i / size[d], idx = i - q * size[d];
      i = q;
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += idx * stride[d][k];
    }
    return off;
  }

  // True when every operand steps through memory with stride 1: flat index i is then
  // the element offset of every operand.
  bool contiguous() const {
    if (ndim == 0) return true;
    if (ndim > 1) return false;
    for (int k = 0; k < N; ++k)
      if (stride[0][k] != 1) return false;
    return true;
  }
};

// Strides of t seen through a broadcast to `shape`, in elements (0 where t broadcasts).
inline Strides broadcast_strides(const Tensor& t, const Shape& shape) {
  Strides s;
  s.resize(shape.size());
  const int64_t lead = shape.size() - t.dim();
  for (int64_t i = 0; i < shape.size(); ++i) {
    const int64_t j = i - lead;
    s[i] = (j < 0 || t.shape()[j] == 1) ? 0 : t.strides()[j];
  }
  return s;
}

// Builds the calculator from a shape and one stride list per operand (outermost first):
// drops size-1 dims and merges dim i into i+1 when every operand allows it.
template <int N>
OffsetCalc<N> make_calc(const Shape& shape, const std::array<Strides, N>& st) {
  OffsetCalc<N> c;
  // Walk from the innermost dim outwards, appending to c (innermost first).
  for (int64_t i = shape.size() - 1; i >= 0; --i) {
    if (shape[i] == 1) continue;
    bool merge = c.ndim > 0;
    for (int k = 0; k < N && merge; ++k) merge = st[k][i] == c.stride[c.ndim - 1][k] * c.size[c.ndim - 1];
    if (merge) {
      c.size[c.ndim - 1] *= shape[i];
    } else {
      c.size[c.ndim] = shape[i];
      for (int k = 0; k < N; ++k) c.stride[c.ndim][k] = st[k][i];
      ++c.ndim;
    }
  }
  int64_t numel = 1;
  for (int d = 0; d < c.ndim; ++d) numel *= c.size[d];
  c.narrow = numel < (int64_t(1) << 31);
  return c;
}

// The usual case: operands (output first) broadcast to `shape`.
template <int N>
OffsetCalc<N> make_calc(const Shape& shape, const std::array<const Tensor*, N>& ops) {
  std::array<Strides, N> st;
  for (int k = 0; k < N; ++k) st[k] = broadcast_strides(*ops[k], shape);
  return make_calc<N>(shape, st);
}

// A typed device pointer to element [0,...] of t (already offset).
template <class T>
T* ptr(const Tensor& t) {
  return static_cast<T*>(t.raw_data());
}

inline bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// The grid-stride loop's first index and step, in 64 bits (grids times blocks overflow int).
__device__ __forceinline__ int64_t global_thread() { return blockIdx.x * int64_t(blockDim.x) + threadIdx.x; }
__device__ __forceinline__ int64_t grid_threads() { return int64_t(gridDim.x) * blockDim.x; }

// The accumulator type: float sums run in double (cheap here, memory-bound anyway, and
// it keeps long sums as accurate as the CPU's), integers in int64.
template <class T>
using acc_t = std::conditional_t<std::is_floating_point_v<T>, double, T>;

// ---- warp and block reductions ---------------------------------------------------------
// Within aligned groups of G lanes (G a power of 2, at most 32): every lane of the group
// ends with the group's sum. All 32 lanes of the warp must take part.
template <int G = 32, class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = G / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Combines with any associative `f` within groups of G lanes; every lane ends with its
// group's result.
template <int G = 32, class T, class F>
__device__ __forceinline__ T warp_all_reduce(T v, F f) {
#pragma unroll
  for (int o = G / 2; o > 0; o >>= 1) v = f(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide all-reduce for blockDim.x a multiple of 32 (up to 1024): every thread gets
// the result. `scratch` holds 32 values; the function syncs before reusing it.
template <class T, class F>
__device__ T block_all_reduce(T v, F f, T* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_all_reduce(v, f);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = scratch[0];
  for (int w = 1; w < warps; ++w) v = f(v, scratch[w]);
  return v;
}

}  // namespace weft::cuda::kern
