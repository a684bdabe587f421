// Elementwise kernels: out[i] = f(a[i], b[i]) over broadcast shapes and any strides.
//
// Each public raw op checks its inputs, allocates the output, and hands a small functor
// to the strided loops in loops.h. The `Binary`/`Unary` enums map to functors here once,
// so adding an op is one line in each switch.
#include <cmath>

#include "../../cuda/kernels.h"
#include "../raw.h"
#include "loops.h"

namespace weft::raw {

using cpu::check_defined;
using cpu::for_each;

namespace {

// Applies f to (out, a, b): a tight loop when all three are contiguous runs.
template <class To, class Ta, class Tb, class F>
void run3(const Tensor& out, const Tensor& a, const Tensor& b, F f) {
  for_each<3>(out.shape(), {&out, &a, &b}, [&](const std::array<char*, 3>& p, int64_t n, const std::array<int64_t, 3>& s) {
    To* o = reinterpret_cast<To*>(p[0]);
    const Ta* x = reinterpret_cast<const Ta*>(p[1]);
    const Tb* y = reinterpret_cast<const Tb*>(p[2]);
    if (s[0] == sizeof(To) && s[1] == sizeof(Ta) && s[2] == sizeof(Tb)) {
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
    } else if (s[0] == sizeof(To) && s[1] == sizeof(Ta) && s[2] == 0) {
      const Tb yv = *y;  // b broadcast along this run (a scalar or a bias)
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], yv);
    } else {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<To*>(p[0] + i * s[0]) =
            f(*reinterpret_cast<const Ta*>(p[1] + i * s[1]), *reinterpret_cast<const Tb*>(p[2] + i * s[2]));
    }
  });
}

template <class To, class Ta, class F>
void run2(const Tensor& out, const Tensor& a, F f) {
  for_each<2>(out.shape(), {&out, &a}, [&](const std::array<char*, 2>& p, int64_t n, const std::array<int64_t, 2>& s) {
    To* o = reinterpret_cast<To*>(p[0]);
    const Ta* x = reinterpret_cast<const Ta*>(p[1]);
    if (s[0] == sizeof(To) && s[1] == sizeof(Ta)) {
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i]);
    } else {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<To*>(p[0] + i * s[0]) = f(*reinterpret_cast<const Ta*>(p[1] + i * s[1]));
    }
  });
}

const char* binary_name(Binary op) {
  switch (op) {
    case Binary::Add: return "add";
    case Binary::Sub: return "sub";
    case Binary::Mul: return "mul";
    case Binary::Div: return "div";
    case Binary::Pow: return "pow";
    case Binary::Maximum: return "maximum";
    case Binary::Minimum: return "minimum";
  }
  return "binary";
}

// Calls k(functor) with the functor for `op` on type T.
template <class T, class K>
void with_binary(Binary op, K&& k) {
  switch (op) {
    case Binary::Add: return k([](T x, T y) { return T(x + y); });
    case Binary::Sub: return k([](T x, T y) { return T(x - y); });
    case Binary::Mul: return k([](T x, T y) { return T(x * y); });
    case Binary::Div:
      if constexpr (std::is_integral_v<T>)
        return k([](T x, T y) { return y == 0 ? T(0) : T(x / y); });  // no UB on x/0
      else
        return k([](T x, T y) { return T(x / y); });
    case Binary::Pow: return k([](T x, T y) { return T(std::pow(x, y)); });
    case Binary::Maximum: return k([](T x, T y) { return x > y || x != x ? x : y; });
    case Binary::Minimum: return k([](T x, T y) { return x < y || x != x ? x : y; });
  }
}

template <class T, class K>
void with_unary(Unary op, K&& k) {
  if constexpr (std::is_floating_point_v<T>) {
    switch (op) {
      case Unary::Exp: return k([](T x) { return std::exp(x); });
      case Unary::Log: return k([](T x) { return std::log(x); });
      case Unary::Sqrt: return k([](T x) { return std::sqrt(x); });
      case Unary::Sigmoid: return k([](T x) { return T(1) / (T(1) + std::exp(-x)); });
      case Unary::Tanh: return k([](T x) { return std::tanh(x); });
      case Unary::Reciprocal: return k([](T x) { return T(1) / x; });
      default: break;
    }
  }
  switch (op) {
    case Unary::Neg: return k([](T x) { return T(-x); });
    case Unary::Abs: return k([](T x) { return x < 0 ? T(-x) : x; });
    case Unary::Relu: return k([](T x) { return x > 0 ? x : T(0); });
    case Unary::Sign: return k([](T x) { return T((x > 0) - (x < 0)); });
    case Unary::Square: return k([](T x) { return T(x * x); });
    default: throw Error("unary: this op needs a floating-point tensor");
  }
}

Tensor scalar_like(const Tensor& a, double s) {
  Tensor t = empty({}, a.dtype(), a.device());
  fill_(t, s);
  return t;
}

}  // namespace

void check_same(const char* op, const Tensor& a, const Tensor& b) {
  WEFT_CHECK(a.defined() && b.defined(), op, ": an input tensor is undefined");
  WEFT_CHECK(a.device() == b.device(), op, ": tensors are on different devices, ", a.device(), " ",
             a.shape(), " and ", b.device(), " ", b.shape());
  WEFT_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ, ", a.dtype(), " ", a.shape(), " and ",
             b.dtype(), " ", b.shape());
}

void check_cpu(const char* op, const Tensor& a) {
  WEFT_CHECK(a.defined(), op, ": the input tensor is undefined");
  WEFT_CHECK(a.device().is_cpu(), op, ": no CUDA kernel in this build for a tensor on ", a.device());
}

Tensor binary(Binary op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  check_same(name, a, b);
  Tensor out = empty(broadcast_shapes(name, a.shape(), b.shape()), a.dtype(), a.device());
  if (a.device().is_cuda()) {
    cuda::binary(op, out, a, b);
    return out;
  }
  dispatch_numeric(a.dtype(), name, [&]<class T>() {
    with_binary<T>(op, [&](auto f) { run3<T, T, T>(out, a, b, f); });
  });
  return out;
}

// A scalar operand is captured in the loop rather than made into a 0-d tensor: one
// allocation per op instead of two, and no broadcasting machinery.
Tensor binary_scalar(Binary op, const Tensor& a, double s) {
  const char* name = binary_name(op);
  check_defined(name, a);
  Tensor out = empty(a.shape(), a.dtype(), a.device());
  if (a.device().is_cuda()) {
    cuda::binary_scalar(op, out, a, s, /*scalar_first=*/false);
    return out;
  }
  dispatch_numeric(a.dtype(), name, [&]<class T>() {
    const T v = static_cast<T>(s);
    with_binary<T>(op, [&](auto f) { run2<T, T>(out, a, [f, v](T x) { return f(x, v); }); });
  });
  return out;
}
Tensor scalar_binary(Binary op, double s, const Tensor& a) {
  check_defined(binary_name(op), a);
  if (a.device().is_cuda()) {  // the scalar rides in the kernel's arguments, not in a 0-d tensor
    Tensor out = empty(a.shape(), a.dtype(), a.device());
    cuda::binary_scalar(op, out, a, s, /*scalar_first=*/true);
    return out;
  }
  return binary(op, scalar_like(a, s), a);
}

Tensor unary(Unary op, const Tensor& a) {
  check_defined("unary", a);
  Tensor out = empty(a.shape(), a.dtype(), a.device());
  if (a.device().is_cuda()) {
    cuda::unary(op, out, a);
    return out;
  }
  dispatch_numeric(a.dtype(), "unary", [&]<class T>() {
    with_unary<T>(op, [&](auto f) { run2<T, T>(out, a, f); });
  });
  return out;
}

Tensor compare(Compare op, const Tensor& a, const Tensor& b) {
  check_same("compare", a, b);
  Tensor out = empty(broadcast_shapes("compare", a.shape(), b.shape()), kBool, a.device());
  if (a.device().is_cuda()) {
    cuda::compare(op, out, a, b);
    return out;
  }
  dispatch_all(a.dtype(), [&]<class T>() {
    switch (op) {
      case Compare::Eq: return run3<bool, T, T>(out, a, b, [](T x, T y) { return x == y; });
      case Compare::Ne: return run3<bool, T, T>(out, a, b, [](T x, T y) { return x != y; });
      case Compare::Lt: return run3<bool, T, T>(out, a, b, [](T x, T y) { return x < y; });
      case Compare::Le: return run3<bool, T, T>(out, a, b, [](T x, T y) { return x <= y; });
      case Compare::Gt: return run3<bool, T, T>(out, a, b, [](T x, T y) { return x > y; });
      case Compare::Ge: return run3<bool, T, T>(out, a, b, [](T x, T y) { return x >= y; });
    }
  });
  return out;
}

Tensor compare_scalar(Compare op, const Tensor& a, double s) {
  check_defined("compare", a);
  if (a.device().is_cuda()) {
    Tensor out = empty(a.shape(), kBool, a.device());
    cuda::compare_scalar(op, out, a, s);
    return out;
  }
  return compare(op, a, scalar_like(a, s));
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_same("where", a, b);
  WEFT_CHECK(cond.dtype() == kBool, "where: the condition must be a bool tensor, got ", cond.dtype());
  WEFT_CHECK(cond.device() == a.device(), "where: the condition is on ", cond.device(), ", the values on ",
             a.device());
  const Shape shape = broadcast_shapes("where", broadcast_shapes("where", cond.shape(), a.shape()), b.shape());
  Tensor out = empty(shape, a.dtype(), a.device());
  if (a.device().is_cuda()) {
    cuda::where(out, cond, a, b);
    return out;
  }
  dispatch_all(a.dtype(), [&]<class T>() {
    for_each<4>(shape, {&out, &cond, &a, &b}, [&](const std::array<char*, 4>& p, int64_t n, const std::array<int64_t, 4>& s) {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<T*>(p[0] + i * s[0]) = *reinterpret_cast<const bool*>(p[1] + i * s[1])
                                                      ? *reinterpret_cast<const T*>(p[2] + i * s[2])
                                                      : *reinterpret_cast<const T*>(p[3] + i * s[3]);
    });
  });
  return out;
}

void binary_(Binary op, const Tensor& dst, const Tensor& src) {
  const char* name = binary_name(op);
  check_same(name, dst, src);
  WEFT_CHECK(broadcast_shapes(name, dst.shape(), src.shape()) == dst.shape(), name, "_: in-place result of shape ",
             broadcast_shapes(name, dst.shape(), src.shape()), " does not fit the destination ", dst.shape());
  if (dst.device().is_cuda()) {
    cuda::binary(op, dst, dst, src);
    dst.storage()->bump_version();
    return;
  }
  dispatch_numeric(dst.dtype(), name, [&]<class T>() {
    with_binary<T>(op, [&](auto f) { run3<T, T, T>(dst, dst, src, f); });
  });
  dst.storage()->bump_version();
}

void binary_scalar_(Binary op, const Tensor& dst, double s) {
  check_defined(binary_name(op), dst);
  if (dst.device().is_cuda()) {
    cuda::binary_scalar(op, dst, dst, s, /*scalar_first=*/false);
    dst.storage()->bump_version();
    return;
  }
  binary_(op, dst, scalar_like(dst, s));
}

void axpy_(const Tensor& dst, double alpha, const Tensor& src) {
  check_same("axpy_", dst, src);
  WEFT_CHECK(broadcast_shapes("axpy_", dst.shape(), src.shape()) == dst.shape(), "axpy_: source ", src.shape(),
             " does not broadcast to the destination ", dst.shape());
  if (dst.device().is_cuda()) {
    cuda::axpy(dst, alpha, src);
    dst.storage()->bump_version();
    return;
  }
  dispatch_floating(dst.dtype(), "axpy_", [&]<class T>() {
    const T al = static_cast<T>(alpha);
    run3<T, T, T>(dst, dst, src, [al](T x, T y) { return T(x + al * y); });
  });
  dst.storage()->bump_version();
}

Tensor relu_backward(const Tensor& grad, const Tensor& out) {
  check_same("relu_backward", grad, out);
  Tensor gi = empty(grad.shape(), grad.dtype(), grad.device());
  if (grad.device().is_cuda()) {
    cuda::activation_backward(cuda::Activation::Relu, gi, grad, out);
    return gi;
  }
  dispatch_floating(grad.dtype(), "relu_backward", [&]<class T>() {
    run3<T, T, T>(gi, grad, out, [](T g, T y) { return y > 0 ? g : T(0); });
  });
  return gi;
}

Tensor sigmoid_backward(const Tensor& grad, const Tensor& out) {
  check_same("sigmoid_backward", grad, out);
  Tensor gi = empty(grad.shape(), grad.dtype(), grad.device());
  if (grad.device().is_cuda()) {
    cuda::activation_backward(cuda::Activation::Sigmoid, gi, grad, out);
    return gi;
  }
  dispatch_floating(grad.dtype(), "sigmoid_backward", [&]<class T>() {
    run3<T, T, T>(gi, grad, out, [](T g, T y) { return g * y * (T(1) - y); });
  });
  return gi;
}

Tensor tanh_backward(const Tensor& grad, const Tensor& out) {
  check_same("tanh_backward", grad, out);
  Tensor gi = empty(grad.shape(), grad.dtype(), grad.device());
  if (grad.device().is_cuda()) {
    cuda::activation_backward(cuda::Activation::Tanh, gi, grad, out);
    return gi;
  }
  dispatch_floating(grad.dtype(), "tanh_backward", [&]<class T>() {
    run3<T, T, T>(gi, grad, out, [](T g, T y) { return g * (T(1) - y * y); });
  });
  return gi;
}

}  // namespace weft::raw
