// Strided loops: the one place that knows how to walk N tensors of the same (broadcast)
// shape with arbitrary strides. Every elementwise kernel is a body handed to these.
//
// The walk is split into runs along the innermost dimension: body(ptrs, n, steps) gets N
// byte pointers, a run length n and N byte steps, and handles elements
// ptrs[k] + i*steps[k] for i in [0, n). When every step equals the element size the body
// takes a tight loop the compiler vectorises; broadcasting shows up as a step of 0.
//
// Internal header: not installed.
#pragma once

#include <array>
#include <cstdint>

#include "../shape.h"
#include "../tensor.h"
#include "../thread_pool.h"

namespace weft::cpu {

// The raw ops in this folder run on the CPU or, for a tensor on another device, call
// that device's backend (../backend.h); this is their "is there a tensor at all" check.
inline void check_defined(const char* op, const Tensor& a) {
  WEFT_CHECK(a.defined(), op, ": the input tensor is undefined");
}

// Elements per chunk below which a loop stays on one thread.
inline constexpr int64_t kElementwiseGrain = 32768;

template <int N>
struct LoopPlan {
  Shape shape;                        // after merging dims
  std::array<Strides, N> steps;       // bytes per step in each dim, per operand
  std::array<char*, N> base;
};

// Strides of `t` seen through a broadcast to `shape` (0 where t is broadcast), in bytes.
inline Strides broadcast_byte_strides(const Tensor& t, const Shape& shape) {
  Strides s;
  s.resize(shape.size());
  const int64_t lead = shape.size() - t.dim();
  const int64_t es = element_size(t.dtype());
  for (int64_t i = 0; i < shape.size(); ++i) {
    const int64_t j = i - lead;
    s[i] = (j < 0 || t.shape()[j] == 1) ? 0 : t.strides()[j] * es;
  }
  return s;
}

// Builds a plan: operand 0 is usually the output. Merges adjacent dims that every operand
// steps through contiguously, so a contiguous tensor becomes one long run.
template <int N>
LoopPlan<N> make_plan(const Shape& shape, const std::array<const Tensor*, N>& ops) {
  LoopPlan<N> p;
  std::array<Strides, N> st;
  for (int k = 0; k < N; ++k) {
    st[k] = broadcast_byte_strides(*ops[k], shape);
    p.base[k] = static_cast<char*>(ops[k]->raw_data());
  }
  // Drop size-1 dims, then merge dim i into i+1 when stride[i] == stride[i+1]*size[i+1].
  Shape sh;
  std::array<Strides, N> out;
  for (int64_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1) continue;
    bool merge = sh.size() > 0;
    for (int k = 0; k < N && merge; ++k) merge = out[k].back() == st[k][i] * shape[i];
    if (merge) {
      sh[sh.size() - 1] *= shape[i];
      for (int k = 0; k < N; ++k) out[k][out[k].size() - 1] = st[k][i];
    } else {
      sh.push_back(shape[i]);
      for (int k = 0; k < N; ++k) out[k].push_back(st[k][i]);
    }
  }
  if (sh.size() == 0) {  // a single element
    sh.push_back(1);
    for (int k = 0; k < N; ++k) out[k].push_back(0);
  }
  p.shape = sh;
  p.steps = out;
  return p;
}

// Runs body over the flat element range [begin, end) of the plan.
template <int N, class Body>
void run_plan_range(const LoopPlan<N>& p, int64_t begin, int64_t end, Body&& body) {
  const int64_t nd = p.shape.size();
  const int64_t inner = p.shape[nd - 1];
  // Multi-index of `begin`, outer dims only.
  std::array<int64_t, kMaxDims> idx{};
  int64_t rem = begin / inner, col = begin % inner;
  for (int64_t d = nd - 2; d >= 0; --d) {
    idx[d] = rem % p.shape[d];
    rem /= p.shape[d];
  }
  std::array<int64_t, N> inner_step;
  for (int k = 0; k < N; ++k) inner_step[k] = p.steps[k][nd - 1];
  int64_t pos = begin;
  while (pos < end) {
    std::array<char*, N> ptr;
    for (int k = 0; k < N; ++k) {
      int64_t off = col * inner_step[k];
      for (int64_t d = 0; d < nd - 1; ++d) off += idx[d] * p.steps[k][d];
      ptr[k] = p.base[k] + off;
    }
    const int64_t n = std::min(inner - col, end - pos);
    body(ptr, n, inner_step);
    pos += n;
    col = 0;
    for (int64_t d = nd - 2; d >= 0; --d) {  // odometer increment of the outer index
      if (++idx[d] < p.shape[d]) break;
      idx[d] = 0;
    }
  }
}

// Builds the plan and runs body over all elements, in parallel for large tensors.
template <int N, class Body>
void for_each(const Shape& shape, const std::array<const Tensor*, N>& ops, Body&& body,
              int64_t grain = kElementwiseGrain) {
  const int64_t numel = shape.numel();
  if (numel == 0) return;
  const LoopPlan<N> plan = make_plan<N>(shape, ops);
  parallel_for(0, numel, grain, [&](int64_t b, int64_t e) { run_plan_range<N>(plan, b, e, body); }, 4);
}

}  // namespace weft::cpu
