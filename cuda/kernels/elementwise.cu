// Elementwise kernels on the GPU, the twins of tensor/cpu/elementwise.cpp.
//
// out[i] = f(a[i], b[i]) over the output's shape; inputs broadcast (stride 0) and may
// have any strides. Two kernels per arity:
//   - contiguous: every operand steps by 1 element. When all pointers are 16-byte
//     aligned each thread moves 16 bytes per operand (float4-sized vectors), which is
//     what lets a memory-bound add reach full bandwidth;
//   - strided: OffsetCalc turns each flat index into per-operand offsets.
// The math sits in small functors, one per op, chosen once on the host, so each kernel
// is a tight loop with no per-element switch.
#include <cmath>
#include <limits>

#include "../kernels.h"
#include "common.cuh"

namespace weft::cuda {

using namespace kern;

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

// ---- the math, one functor per op ----------------------------------------------------
// Each mirrors the lambda of the same op in tensor/cpu/elementwise.cpp.
template <class T> struct AddF { __device__ T operator()(T x, T y) const { return T(x + y); } };
template <class T> struct SubF { __device__ T operator()(T x, T y) const { return T(x - y); } };
template <class T> struct MulF { __device__ T operator()(T x, T y) const { return T(x * y); } };
template <class T> struct DivF {
  __device__ T operator()(T x, T y) const {
    if constexpr (std::is_integral_v<T>) return y == 0 ? T(0) : T(x / y);  // no trap on x/0
    else return x / y;
  }
};
template <class T> struct PowF {
  __device__ T operator()(T x, T y) const {
    if constexpr (std::is_same_v<T, float>) {
      return powf(x, y);
    } else if constexpr (std::is_same_v<T, double>) {
      return pow(x, y);
    } else {
      // Integers by repeated squaring: exact, where the GPU's pow(double) may land an ulp
      // below an integer and truncate. Negative exponents give what the CPU's
      // T(std::pow(x, y)) gives: 1/x^|y| truncated (0 unless x is 1 or -1).
      if (y < 0) {
        if (x == 1) return 1;
        if (x == -1) return (y & 1) ? -1 : 1;
        return x == 0 ? std::numeric_limits<T>::min() : 0;  // x86 converts inf to INT64_MIN
      }
      T r = 1, b = x;
      for (T e = y; e > 0; e >>= 1) {
        if (e & 1) r *= b;
        b *= b;
      }
      return r;
    }
  }
};
template <class T> struct MaxF { __device__ T operator()(T x, T y) const { return x > y || x != x ? x : y; } };
template <class T> struct MinF { __device__ T operator()(T x, T y) const { return x < y || x != x ? x : y; } };

// f(x, s) or f(s, x) for a scalar captured by value.
template <class F, class T> struct ScalarRight {
  F f; T s;
  __device__ auto operator()(T x) const { return f(x, s); }
};
template <class F, class T> struct ScalarLeft {
  F f; T s;
  __device__ auto operator()(T x) const { return f(s, x); }
};

template <class T> struct NegF { __device__ T operator()(T x) const { return T(-x); } };
template <class T> struct AbsF { __device__ T operator()(T x) const { return x < 0 ? T(-x) : x; } };
template <class T> struct ReluF { __device__ T operator()(T x) const { return x > 0 ? x : T(0); } };
template <class T> struct SignF { __device__ T operator()(T x) const { return T((x > 0) - (x < 0)); } };
template <class T> struct SquareF { __device__ T operator()(T x) const { return T(x * x); } };
template <class T> struct ExpF { __device__ T operator()(T x) const { return exp(x); } };
template <class T> struct LogF { __device__ T operator()(T x) const { return log(x); } };
template <class T> struct SqrtF { __device__ T operator()(T x) const { return sqrt(x); } };
template <class T> struct SigmoidF { __device__ T operator()(T x) const { return T(1) / (T(1) + exp(-x)); } };
template <class T> struct TanhF { __device__ T operator()(T x) const { return tanh(x); } };
template <class T> struct RecipF { __device__ T operator()(T x) const { return T(1) / x; } };

template <class T> struct EqF { __device__ bool operator()(T x, T y) const { return x == y; } };
template <class T> struct NeF { __device__ bool operator()(T x, T y) const { return x != y; } };
template <class T> struct LtF { __device__ bool operator()(T x, T y) const { return x < y; } };
template <class T> struct LeF { __device__ bool operator()(T x, T y) const { return x <= y; } };
template <class T> struct GtF { __device__ bool operator()(T x, T y) const { return x > y; } };
template <class T> struct GeF { __device__ bool operator()(T x, T y) const { return x >= y; } };

template <class T> struct AxpyF {
  T alpha;
  __device__ T operator()(T x, T y) const { return T(x + alpha * y); }
};
template <class T> struct ReluBackF { __device__ T operator()(T g, T y) const { return y > 0 ? g : T(0); } };
template <class T> struct SigmoidBackF { __device__ T operator()(T g, T y) const { return g * y * (T(1) - y); } };
template <class T> struct TanhBackF { __device__ T operator()(T g, T y) const { return g * (T(1) - y * y); } };

// ---- op enum -> functor (on the host) ------------------------------------------------
const char* binary_name(raw::Binary op) {
  switch (op) {
    case raw::Binary::Add: return "add";
    case raw::Binary::Sub: return "sub";
    case raw::Binary::Mul: return "mul";
    case raw::Binary::Div: return "div";
    case raw::Binary::Pow: return "pow";
    case raw::Binary::Maximum: return "maximum";
    case raw::Binary::Minimum: return "minimum";
  }
  return "binary";
}

template <class T, class K>
void with_binary(raw::Binary op, K&& k) {
  switch (op) {
    case raw::Binary::Add: return k(AddF<T>{});
    case raw::Binary::Sub: return k(SubF<T>{});
    case raw::Binary::Mul: return k(MulF<T>{});
    case raw::Binary::Div: return k(DivF<T>{});
    case raw::Binary::Pow: return k(PowF<T>{});
    case raw::Binary::Maximum: return k(MaxF<T>{});
    case raw::Binary::Minimum: return k(MinF<T>{});
  }
}

template <class T, class K>
void with_unary(raw::Unary op, K&& k) {
  if constexpr (std::is_floating_point_v<T>) {
    switch (op) {
      case raw::Unary::Exp: return k(ExpF<T>{});
      case raw::Unary::Log: return k(LogF<T>{});
      case raw::Unary::Sqrt: return k(SqrtF<T>{});
      case raw::Unary::Sigmoid: return k(SigmoidF<T>{});
      case raw::Unary::Tanh: return k(TanhF<T>{});
      case raw::Unary::Reciprocal: return k(RecipF<T>{});
      default: break;
    }
  }
  switch (op) {
    case raw::Unary::Neg: return k(NegF<T>{});
    case raw::Unary::Abs: return k(AbsF<T>{});
    case raw::Unary::Relu: return k(ReluF<T>{});
    case raw::Unary::Sign: return k(SignF<T>{});
    case raw::Unary::Square: return k(SquareF<T>{});
    default: throw Error("unary: this op needs a floating-point tensor");
  }
}

template <class T, class K>
void with_compare(raw::Compare op, K&& k) {
  switch (op) {
    case raw::Compare::Eq: return k(EqF<T>{});
    case raw::Compare::Ne: return k(NeF<T>{});
    case raw::Compare::Lt: return k(LtF<T>{});
    case raw::Compare::Le: return k(LeF<T>{});
    case raw::Compare::Gt: return k(GtF<T>{});
    case raw::Compare::Ge: return k(GeF<T>{});
  }
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
        launch_map1<T, T>(name, out, a, ScalarLeft<decltype(f), T>{f, v});
      else
        launch_map1<T, T>(name, out, a, ScalarRight<decltype(f), T>{f, v});
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
    with_compare<T>(op, [&](auto f) { launch_map1<bool, T>("compare", out, a, ScalarRight<decltype(f), T>{f, v}); });
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
    launch_map2<T, T, T>("axpy_", dst, dst, src, AxpyF<T>{static_cast<T>(alpha)});
  });
}

void activation_backward(Activation act, const Tensor& gin, const Tensor& grad, const Tensor& out) {
  const char* name = act == Activation::Relu ? "relu_backward" : act == Activation::Sigmoid ? "sigmoid_backward"
                                                                                            : "tanh_backward";
  dispatch_floating(grad.dtype(), name, [&]<class T>() {
    switch (act) {
      case Activation::Relu: return launch_map2<T, T, T>(name, gin, grad, out, ReluBackF<T>{});
      case Activation::Sigmoid: return launch_map2<T, T, T>(name, gin, grad, out, SigmoidBackF<T>{});
      case Activation::Tanh: return launch_map2<T, T, T>(name, gin, grad, out, TanhBackF<T>{});
    }
  });
}

}  // namespace weft::cuda
