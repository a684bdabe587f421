// The arithmetic of the element-wise ops, written once for both devices.
//
// Each op is a small functor whose operator() is WEFT_HD: the CPU loops of
// tensor/cpu/elementwise.cpp and the CUDA kernels of cuda/kernels/elementwise.cu call the
// very same function per element, so a formula (or a NaN rule) cannot differ between
// devices. The with_binary / with_unary / with_compare / with_activation_backward
// switches turn a runtime op enum into its functor once, on the host, before the loop or
// the launch: the per-element code has no switch in it.
//
// Semantics that follow PyTorch: relu(x) is x < 0 ? 0 : x, so relu(NaN) is NaN and
// relu(-0.0) is -0.0, and its gradient passes unless the output is <= 0 (so it is 1 at
// NaN, as PyTorch's threshold_backward gives); max pooling credits the first of tied
// numbers and the last NaN of a window; maximum/minimum propagate NaN; integer division by zero
// gives 0 here (PyTorch raises; a GPU kernel cannot), integer pow is exact (repeated
// squaring; an overflow wraps), and a negative integer exponent gives 1 / x^|y|
// truncated: 0 unless x is 1 or -1 (PyTorch raises "Integers to negative integer powers
// are not allowed"). Floating pow is C's pow for every exponent, where PyTorch computes
// x*x, x*x*x, sqrt(x), 1/sqrt(x), 1/x and 1/(x*x) for the exponents 2, 3, 0.5, -0.5, -1
// and -2: so pow(-0, 0.5) is +0 here and -0 (sqrt) there, pow(-inf, 0.5) is +inf here
// and NaN there, and x^3 can differ in its last bit.
//
// The activations of the input (gelu, silu, leaky_relu, softplus: raw::InputActivation)
// are PyTorch's CPU formulas written out, so their edge cases are PyTorch's too: NaN in
// gives NaN out and a NaN gradient, except leaky_relu's gradient, which is
// x > 0 ? grad : grad * slope and so grad * slope at NaN (and at 0, -0); silu(-inf) is
// -inf / inf = NaN, gelu(-inf) is -inf * 0 = NaN, and gelu's gradient at +-inf is NaN
// (x * pdf(x) = inf * 0); softplus(x) is x itself where beta x > threshold, and its
// gradient there is exactly grad. PyTorch computes float gelu, silu and softplus with
// its own vectorised exp, erf and tanh, so a float result can differ from it in the last
// bits, and one case differs outright: gelu(+inf) is +inf here, NaN from PyTorch's CPU
// float kernel (reported as a bug there, pytorch/pytorch#185770).
//
// Internal header: not installed.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "error.h"
#include "host_device.h"
#include "raw.h"

namespace weft::ew {

// ---- binary: out = f(x, y) -----------------------------------------------------------------
template <class T>
struct Add {
  WEFT_HD T operator()(T x, T y) const { return T(x + y); }
};
template <class T>
struct Sub {
  WEFT_HD T operator()(T x, T y) const { return T(x - y); }
};
template <class T>
struct Mul {
  WEFT_HD T operator()(T x, T y) const { return T(x * y); }
};
template <class T>
struct Div {
  WEFT_HD T operator()(T x, T y) const {
    if constexpr (std::is_integral_v<T>)
      return y == 0 ? T(0) : T(x / y);  // no trap, no UB on x/0
    else
      return x / y;
  }
};
template <class T>
struct Pow {
  WEFT_HD T operator()(T x, T y) const {
    if constexpr (std::is_floating_point_v<T>) {
      return hd::pow(x, y);
    } else {
      if (y < 0) {
        if (x == 1) return 1;
        if (x == -1) return (y & 1) ? -1 : 1;
        return x == 0 ? std::numeric_limits<T>::min() : 0;  // 1/0: what x86 makes of inf as an int
      }
      // Repeated squaring in unsigned arithmetic: exact, and an overflow wraps instead of
      // being undefined behaviour.
      using U = std::make_unsigned_t<T>;
      U r = 1, b = static_cast<U>(x);
      for (T e = y; e > 0; e >>= 1) {
        if (e & 1) r *= b;
        b *= b;
      }
      return static_cast<T>(r);
    }
  }
};
// NaN wins, as in torch.maximum / torch.minimum. A tie gives y, so maximum(0, -0) is -0;
// PyTorch's CPU gives the first operand in its scalar loop and the second in its vector
// loop (vmaxps), so the sign of a tied zero is not something to rely on there.
template <class T>
struct Maximum {
  WEFT_HD T operator()(T x, T y) const { return x > y || x != x ? x : y; }
};
template <class T>
struct Minimum {
  WEFT_HD T operator()(T x, T y) const { return x < y || x != x ? x : y; }
};

// dst + alpha * src: the in-place axpy_ of optimizers and gradient accumulation.
template <class T>
struct Axpy {
  T alpha;
  WEFT_HD T operator()(T x, T y) const { return T(x + alpha * y); }
};

// f(x, s) or f(s, x) with the scalar s captured by value (binary_scalar, compare_scalar).
template <class F, class T>
struct ScalarRight {
  F f;
  T s;
  WEFT_HD auto operator()(T x) const { return f(x, s); }
};
template <class F, class T>
struct ScalarLeft {
  F f;
  T s;
  WEFT_HD auto operator()(T x) const { return f(s, x); }
};

// ---- unary -------------------------------------------------------------------------------
template <class T>
struct Neg {
  WEFT_HD T operator()(T x) const { return T(-x); }
};
template <class T>
struct Abs {
  WEFT_HD T operator()(T x) const { return x < 0 ? T(-x) : x; }
};
// PyTorch's relu (clamp_min(x, 0)): the comparison is false for NaN and for -0.0, which
// both come out unchanged.
template <class T>
struct Relu {
  WEFT_HD T operator()(T x) const { return x < T(0) ? T(0) : x; }
};
template <class T>
struct Sign {
  WEFT_HD T operator()(T x) const { return T((x > 0) - (x < 0)); }
};
template <class T>
struct Square {
  WEFT_HD T operator()(T x) const { return T(x * x); }
};
template <class T>
struct Exp {
  WEFT_HD T operator()(T x) const { return hd::exp(x); }
};
template <class T>
struct Log {
  WEFT_HD T operator()(T x) const { return hd::log(x); }
};
template <class T>
struct Sqrt {
  WEFT_HD T operator()(T x) const { return hd::sqrt(x); }
};
template <class T>
struct Sigmoid {
  WEFT_HD T operator()(T x) const { return T(1) / (T(1) + hd::exp(-x)); }
};
template <class T>
struct Tanh {
  WEFT_HD T operator()(T x) const { return hd::tanh(x); }
};
template <class T>
struct Reciprocal {
  WEFT_HD T operator()(T x) const { return T(1) / x; }
};

// ---- comparisons: a bool per element ------------------------------------------------------
template <class T>
struct Eq {
  WEFT_HD bool operator()(T x, T y) const { return x == y; }
};
template <class T>
struct Ne {
  WEFT_HD bool operator()(T x, T y) const { return x != y; }
};
template <class T>
struct Lt {
  WEFT_HD bool operator()(T x, T y) const { return x < y; }
};
template <class T>
struct Le {
  WEFT_HD bool operator()(T x, T y) const { return x <= y; }
};
template <class T>
struct Gt {
  WEFT_HD bool operator()(T x, T y) const { return x > y; }
};
template <class T>
struct Ge {
  WEFT_HD bool operator()(T x, T y) const { return x >= y; }
};

// ---- activation backward: grad in = f(grad out, forward output y) ----------------------------
using raw::Activation;
// Whether relu passes the gradient at an output y: unless y <= 0 (PyTorch's
// threshold_backward), so at relu(NaN) = NaN it does -- d relu / dx is 1 there, as in
// PyTorch -- and at relu(+-0) = +-0 it does not.
template <class T>
WEFT_HD inline bool relu_passes(T y) {
  return !(y <= T(0));
}
template <class T>
struct ReluBackward {
  WEFT_HD T operator()(T g, T y) const { return relu_passes(y) ? g : T(0); }
};
template <class T>
struct SigmoidBackward {
  WEFT_HD T operator()(T g, T y) const { return g * y * (T(1) - y); }
};
template <class T>
struct TanhBackward {
  WEFT_HD T operator()(T g, T y) const { return g * (T(1) - y * y); }
};

// ---- activations of the input x, with parameters (raw::InputActivation) -------------------
// Forward functors map x to f(x); backward functors map (grad out g, input x) to
// g * f'(x). The formulas and constants are PyTorch's (aten/src/ATen/native/cpu/
// Activation.cpp), so that rounding and the NaN / infinity cases match.
namespace act {
template <class T>
constexpr T kSqrt1_2 = T(0.70710678118654752440);  // 1 / sqrt(2)
template <class T>
constexpr T kInvSqrt2Pi = T(0.39894228040143267794);  // 1 / sqrt(2 pi), the normal pdf at 0
template <class T>
constexpr T kSqrt2OverPi = T(0.79788456080286535588);  // sqrt(2 / pi)
template <class T>
constexpr T kGeluKappa = T(0.044715);
}  // namespace act

// x * Phi(x), Phi the standard normal CDF. Float on the CPU uses erf_fast (host_device.h),
// as PyTorch's vectorised CPU kernel does: within 1.5e-7 of erf, and 10x faster than
// glibc's erff, which a transformer's MLP would otherwise spend a sixth of its step in.
template <class T>
struct Gelu {
  WEFT_HD T operator()(T x) const { return x * T(0.5) * (T(1) + hd::erf_fast(x * act::kSqrt1_2<T>)); }
};
// d/dx x Phi(x) = Phi(x) + x phi(x)
template <class T>
struct GeluBackward {
  WEFT_HD T operator()(T g, T x) const {
    const T cdf = T(0.5) * (T(1) + hd::erf_fast(x * act::kSqrt1_2<T>));
    const T pdf = act::kInvSqrt2Pi<T> * hd::exp_fast(x * x * T(-0.5));
    return g * (cdf + x * pdf);
  }
};
// 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
template <class T>
struct GeluTanh {
  WEFT_HD T operator()(T x) const {
    const T inner = act::kSqrt2OverPi<T> * (x + act::kGeluKappa<T> * x * x * x);
    return T(0.5) * x * (T(1) + hd::tanh(inner));
  }
};
// 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) du/dx, du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
template <class T>
struct GeluTanhBackward {
  WEFT_HD T operator()(T g, T x) const {
    const T x_sq = x * x;
    const T t = hd::tanh(act::kSqrt2OverPi<T> * (x + act::kGeluKappa<T> * x_sq * x));
    const T du = act::kSqrt2OverPi<T> * (T(1) + T(3) * act::kGeluKappa<T> * x_sq);
    return g * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du);
  }
};
// x sigmoid(x)
template <class T>
struct Silu {
  WEFT_HD T operator()(T x) const { return x / (T(1) + hd::exp(-x)); }
};
// d/dx x s(x) = s(x) (1 + x (1 - s(x)))
template <class T>
struct SiluBackward {
  WEFT_HD T operator()(T g, T x) const {
    const T s = T(1) / (T(1) + hd::exp(-x));
    return g * s * (T(1) + x * (T(1) - s));
  }
};
// The slope branch takes x <= 0 and NaN (the comparison fails): -0 stays -0, NaN stays NaN.
template <class T>
struct LeakyRelu {
  T slope;
  WEFT_HD T operator()(T x) const { return x > T(0) ? x : T(x * slope); }
};
template <class T>
struct LeakyReluBackward {
  T slope;
  WEFT_HD T operator()(T g, T x) const { return x > T(0) ? g : T(g * slope); }
};
// log(1 + exp(beta x)) / beta, or x where beta x > threshold (there the two agree to
// rounding, and exp could overflow).
template <class T>
struct Softplus {
  T beta, threshold;
  WEFT_HD T operator()(T x) const {
    return x * beta > threshold ? x : T(hd::log1p(hd::exp(x * beta)) / beta);
  }
};
// sigmoid(beta x) = z / (z + 1) with z = exp(beta x); exactly 1 above the threshold.
template <class T>
struct SoftplusBackward {
  T beta, threshold;
  WEFT_HD T operator()(T g, T x) const {
    const T z = hd::exp(x * beta);
    return x * beta > threshold ? g : T(g * z / (z + T(1)));
  }
};

// ---- max pooling's winner --------------------------------------------------------------------
// Scanning a window in row-major order, v takes over from the best value so far when it
// is larger or when it is NaN: the first of tied numbers wins, and so does the last NaN
// (PyTorch's max_pool2d rule, `val > maxval || isnan(val)`, on its CPU and its GPU). The
// CPU loops (tensor/cpu/pool.cpp, max_pool_2x2.h) and the CUDA kernel ask this one rule.
template <class T>
WEFT_HD inline bool pool_takes_over(T v, T best) {
  return (v > best) | (v != v);
}

// ---- op enum -> functor, on the host ---------------------------------------------------------
inline const char* binary_name(raw::Binary op) {
  switch (op) {
    case raw::Binary::Add:
      return "add";
    case raw::Binary::Sub:
      return "sub";
    case raw::Binary::Mul:
      return "mul";
    case raw::Binary::Div:
      return "div";
    case raw::Binary::Pow:
      return "pow";
    case raw::Binary::Maximum:
      return "maximum";
    case raw::Binary::Minimum:
      return "minimum";
  }
  return "binary";
}

inline const char* activation_backward_name(Activation act) {
  switch (act) {
    case Activation::Relu:
      return "relu_backward";
    case Activation::Sigmoid:
      return "sigmoid_backward";
    case Activation::Tanh:
      return "tanh_backward";
  }
  return "activation_backward";
}

inline const char* input_activation_name(raw::InputActivation act, bool backward) {
  switch (act) {
    case raw::InputActivation::Gelu:
    case raw::InputActivation::GeluTanh:
      return backward ? "gelu_backward" : "gelu";
    case raw::InputActivation::Silu:
      return backward ? "silu_backward" : "silu";
    case raw::InputActivation::LeakyRelu:
      return backward ? "leaky_relu_backward" : "leaky_relu";
    case raw::InputActivation::Softplus:
      return backward ? "softplus_backward" : "softplus";
  }
  return backward ? "activation_backward" : "activation";
}

// Calls k(functor) with the functor of `op` on element type T.
template <class T, class K>
void with_binary(raw::Binary op, K&& k) {
  switch (op) {
    case raw::Binary::Add:
      return k(Add<T>{});
    case raw::Binary::Sub:
      return k(Sub<T>{});
    case raw::Binary::Mul:
      return k(Mul<T>{});
    case raw::Binary::Div:
      return k(Div<T>{});
    case raw::Binary::Pow:
      return k(Pow<T>{});
    case raw::Binary::Maximum:
      return k(Maximum<T>{});
    case raw::Binary::Minimum:
      return k(Minimum<T>{});
  }
}

template <class T, class K>
void with_unary(raw::Unary op, K&& k) {
  if constexpr (std::is_floating_point_v<T>) {
    switch (op) {
      case raw::Unary::Exp:
        return k(Exp<T>{});
      case raw::Unary::Log:
        return k(Log<T>{});
      case raw::Unary::Sqrt:
        return k(Sqrt<T>{});
      case raw::Unary::Sigmoid:
        return k(Sigmoid<T>{});
      case raw::Unary::Tanh:
        return k(Tanh<T>{});
      case raw::Unary::Reciprocal:
        return k(Reciprocal<T>{});
      default:
        break;
    }
  }
  switch (op) {
    case raw::Unary::Neg:
      return k(Neg<T>{});
    case raw::Unary::Abs:
      return k(Abs<T>{});
    case raw::Unary::Relu:
      return k(Relu<T>{});
    case raw::Unary::Sign:
      return k(Sign<T>{});
    case raw::Unary::Square:
      return k(Square<T>{});
    default:
      throw Error("unary: this op needs a floating-point tensor");
  }
}

template <class T, class K>
void with_compare(raw::Compare op, K&& k) {
  switch (op) {
    case raw::Compare::Eq:
      return k(Eq<T>{});
    case raw::Compare::Ne:
      return k(Ne<T>{});
    case raw::Compare::Lt:
      return k(Lt<T>{});
    case raw::Compare::Le:
      return k(Le<T>{});
    case raw::Compare::Gt:
      return k(Gt<T>{});
    case raw::Compare::Ge:
      return k(Ge<T>{});
  }
}

template <class T, class K>
void with_activation_backward(Activation act, K&& k) {
  switch (act) {
    case Activation::Relu:
      return k(ReluBackward<T>{});
    case Activation::Sigmoid:
      return k(SigmoidBackward<T>{});
    case Activation::Tanh:
      return k(TanhBackward<T>{});
  }
}

// The forward and the backward functor of an input activation on a floating type T,
// its parameters converted to T once here (as PyTorch converts its Scalars).
template <class T, class K>
void with_input_activation(raw::InputActivation act, const raw::ActivationParams& p, K&& k) {
  switch (act) {
    case raw::InputActivation::Gelu:
      return k(Gelu<T>{});
    case raw::InputActivation::GeluTanh:
      return k(GeluTanh<T>{});
    case raw::InputActivation::Silu:
      return k(Silu<T>{});
    case raw::InputActivation::LeakyRelu:
      return k(LeakyRelu<T>{T(p.negative_slope)});
    case raw::InputActivation::Softplus:
      return k(Softplus<T>{T(p.beta), T(p.threshold)});
  }
}

template <class T, class K>
void with_input_activation_backward(raw::InputActivation act, const raw::ActivationParams& p, K&& k) {
  switch (act) {
    case raw::InputActivation::Gelu:
      return k(GeluBackward<T>{});
    case raw::InputActivation::GeluTanh:
      return k(GeluTanhBackward<T>{});
    case raw::InputActivation::Silu:
      return k(SiluBackward<T>{});
    case raw::InputActivation::LeakyRelu:
      return k(LeakyReluBackward<T>{T(p.negative_slope)});
    case raw::InputActivation::Softplus:
      return k(SoftplusBackward<T>{T(p.beta), T(p.threshold)});
  }
}

}  // namespace weft::ew
