// Elementwise kernels on the GPU, the twins of tensor/cpu/elementwise.cpp.
//
// out[i] = f(a[i], b[i]) over the output's shape; inputs broadcast (stride 0) and may
// have any strides. Two kernels per arity:
//   - contiguous: every operand steps by 1 element. When all pointers are 16-byte
//     aligned each thread moves 16 bytes per operand (float4-sized vectors), which is
//     what lets a memory-bound add reach full bandwidth;
//   - strided: OffsetCalc turns each flat index into per-operand offsets.
// The math is tensor/elementwise_math.h's functors, the very ones the CPU loops call,
// chosen once on the host, so each kernel is a tight loop with no per-element switch.
#include <cmath>
#include <limits>

#include "../../tensor/elementwise_math.h"
#include "../kernels.h"
#include "common.cuh"

namespace weft::cuda {

using namespace kern;
using ew::binary_name;
using ew::with_binary;
using ew::with_compare;
using ew::with_unary;

namespace {

// ---- kernels ---------------------------------------------------------------------------
template <class T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

// out = f(a) over n contiguous elements, V per thread step (V = 1: plain loads).
template <int V, class F, class To, class Ta>
__global__ void map1_contig(int64_t n, F f, To* o, const Ta* a) {
  const int64_t nv = n / V;
  for (int64_t i = global_thread(); i < nv; i += grid_threads()) {
    const Vec<Ta, V> x = reinterpret_cast<const Vec<Ta, V>*>(a)[i];
    Vec<To, V> r;
#pragma unroll
    for (int j = 0; j < V; ++j) r.v[j] = f(x.v[j]);
    reinterpret_cast<Vec<To, V>*>(o)[i] = r;
  }
  for (int64_t i = nv * V + global_thread(); i < n; i += grid_threads()) o[i] = f(a[i]);
}

template <class F, class To, class Ta>
__global__ void map1_strided(int64_t n, F f, To* o, const Ta* a, OffsetCalc<2> c) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const auto off = c.get(i);
    o[off[0]] = f(a[off[1]]);
  }
}

// out = f(a, b). `o` may alias `a` (in-place ops): each element is read before it is
// written, by the same thread, so no __restrict__ here.
template <int V, class F, class To, class Ta, class Tb>
__global__ void map2_contig(int64_t n, F f, To* o, const Ta* a, const Tb* b) {
  const int64_t nv = n / V;
  for (int64_t i = global_thread(); i < nv; i += grid_threads()) {
    const Vec<Ta, V> x = reinterpret_cast<const Vec<Ta, V>*>(a)[i];
    const Vec<Tb, V> y = reinterpret_cast<const Vec<Tb, V>*>(b)[i];
    Vec<To, V> r;
#pragma unroll
    for (int j = 0; j < V; ++j) r.v[j] = f(x.v[j], y.v[j]);
    reinterpret_cast<Vec<To, V>*>(o)[i] = r;
  }
  for (int64_t i = nv * V + global_thread(); i < n; i += grid_threads()) o[i] = f(a[i], b[i]);
}

template <class F, class To, class Ta, class Tb>
__global__ void map2_strided(int64_t n, F f, To* o, const Ta* a, const Tb* b, OffsetCalc<3> c) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const auto off = c.get(i);
    o[off[0]] = f(a[off[1]], b[off[2]]);
  }
}

template <class T>
__global__ void where_kernel(int64_t n, T* o, const bool* cond, const T* a, const T* b, OffsetCalc<4> c) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const auto off = c.get(i);
    o[off[0]] = cond[off[1]] ? a[off[2]] : b[off[3]];
  }
}

// ---- launchers -------------------------------------------------------------------------
template <class... Ts>
constexpr int vec_width() {
  constexpr size_t widest = std::max({sizeof(Ts)...});
  return static_cast<int>(16 / widest) > 0 ? static_cast<int>(16 / widest) : 1;
}

template <class To, class Ta, class F>
void launch_map1(const char* op, const Tensor& out, const Tensor& a, F f) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const OffsetCalc<2> c = make_calc<2>(out.shape(), {&out, &a});
  To* o = ptr<To>(out);
  const Ta* x = ptr<const Ta>(a);
  cudaStream_t s = detail::stream();
  if (c.contiguous()) {
    constexpr int V = vec_width<To, Ta>();
    if (aligned(o, sizeof(To) * V) && aligned(x, sizeof(Ta) * V))
      map1_contig<V><<<detail::blocks_for((n + V - 1) / V), detail::kThreads, 0, s>>>(n, f, o, x);
    else
      map1_contig<1><<<detail::blocks_for(n), detail::kThreads, 0, s>>>(n, f, o, x);
  } else {
    map1_strided<<<detail::blocks_for(n), detail::kThreads, 0, s>>>(n, f, o, x, c);
  }
  WEFT_CUDA_LAUNCH_CHECK(op);
}

template <class To, class Ta, class Tb, class F>
void launch_map2(const char* op, const Tensor& out, const Tensor& a, const Tensor& b, F f) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const OffsetCalc<3> c = make_calc<3>(out.shape(), {&out, &a, &b});
  To* o = ptr<To>(out);
  const Ta* x = ptr<const Ta>(a);
  const Tb* y = ptr<const Tb>(b);
  cudaStream_t s = detail::stream();
  if (c.contiguous()) {
    constexpr int V = vec_width<To, Ta, Tb>();
    if (aligned(o, sizeof(To) * V) && aligned(x, sizeof(Ta) * V) && aligned(y, sizeof(Tb) * V))
      map2_contig<V><<<detail::blocks_for((n + V - 1) / V), detail::kThreads, 0, s>>>(n, f, o, x, y);
    else
      map2_contig<1><<<detail::blocks_for(n), detail::kThreads, 0, s>>>(n, f, o, x, y);
  } else {
    map2_strided<<<detail::blocks_for(n), detail::kThreads, 0, s>>>(n, f, o, x, y, c);
  }
  WEFT_CUDA_LAUNCH_CHECK(op);
}

}  // namespace

// ---- the kernels.h entry points --------------------------------------------------------
void binary(raw::Binary op, const Tensor& out, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  dispatch_numeric(a.dtype(), name, [&]<class T>() {
    with_binary<T>(op, [&](auto f) { launch_map2<T, T, T>(name, out, a, b, f); });
  });
}

void binary_scalar(raw::Binary op, const Tensor& out, const Tensor& a, double s, bool scalar_first) {
  const char* name = binary_name(op);
  dispatch_numeric(a.dtype(), name, [&]<class T>() {
    const T v = static_cast<T>(s);
    with_binary<T>(op, [&](auto f) {
      if (scalar_first)
        launch_map1<T, T>(name, out, a, ew::ScalarLeft<decltype(f), T>{f, v});
      else
        launch_map1<T, T>(name, out, a, ew::ScalarRight<decltype(f), T>{f, v});
    });
  });
}

void unary(raw::Unary op, const Tensor& out, const Tensor& a) {
  dispatch_numeric(a.dtype(), "unary", [&]<class T>() {
    with_unary<T>(op, [&](auto f) { launch_map1<T, T>("unary", out, a, f); });
  });
}

void compare(raw::Compare op, const Tensor& out, const Tensor& a, const Tensor& b) {
  dispatch_all(a.dtype(), [&]<class T>() {
    with_compare<T>(op, [&](auto f) { launch_map2<bool, T, T>("compare", out, a, b, f); });
  });
}

void compare_scalar(raw::Compare op, const Tensor& out, const Tensor& a, double s) {
  dispatch_all(a.dtype(), [&]<class T>() {
    const T v = static_cast<T>(s);
    with_compare<T>(op, [&](auto f) { launch_map1<bool, T>("compare", out, a, ew::ScalarRight<decltype(f), T>{f, v}); });
  });
}

void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const OffsetCalc<4> c = make_calc<4>(out.shape(), {&out, &cond, &a, &b});
  dispatch_all(a.dtype(), [&]<class T>() {
    where_kernel<T><<<detail::blocks_for(n), detail::kThreads, 0, detail::stream()>>>(
        n, ptr<T>(out), ptr<const bool>(cond), ptr<const T>(a), ptr<const T>(b), c);
  });
  WEFT_CUDA_LAUNCH_CHECK("where");
}

void axpy(const Tensor& dst, double alpha, const Tensor& src) {
  dispatch_floating(dst.dtype(), "axpy_", [&]<class T>() {
    launch_map2<T, T, T>("axpy_", dst, dst, src, ew::Axpy<T>{static_cast<T>(alpha)});
  });
}

void activation_backward(raw::Activation act, const Tensor& gin, const Tensor& grad, const Tensor& out) {
  const char* name = ew::activation_backward_name(act);
  dispatch_floating(grad.dtype(), name, [&]<class T>() {
    ew::with_activation_backward<T>(act, [&](auto f) { launch_map2<T, T, T>(name, gin, grad, out, f); });
  });
}

void input_activation(raw::InputActivation act, const raw::ActivationParams& p, const Tensor& out, const Tensor& x) {
  const char* name = ew::input_activation_name(act, /*backward=*/false);
  dispatch_floating(x.dtype(), name, [&]<class T>() {
    ew::with_input_activation<T>(act, p, [&](auto f) { launch_map1<T, T>(name, out, x, f); });
  });
}

void input_activation_backward(raw::InputActivation act, const raw::ActivationParams& p, const Tensor& gin,
                               const Tensor& grad, const Tensor& x) {
  const char* name = ew::input_activation_name(act, /*backward=*/true);
  dispatch_floating(x.dtype(), name, [&]<class T>() {
    ew::with_input_activation_backward<T>(act, p, [&](auto f) { launch_map2<T, T, T>(name, gin, grad, x, f); });
  });
}

}  // namespace weft::cuda
