// Elementwise kernels: out[i] = f(a[i], b[i]) over broadcast shapes and any strides.
//
// Each public raw op checks its inputs, allocates the output, and hands the op's functor
// (elementwise_math.h, shared with the CUDA kernels) to the strided loops in loops.h; a
// tensor on another device goes to its backend (backend.h) instead of the loop.
#include <cmath>

#include "../backend.h"
#include "../elementwise_math.h"
#include "../raw.h"
#include "loops.h"

namespace weft::raw {

using cpu::check_defined;
using cpu::for_each;
using ew::binary_name;
using ew::with_binary;
using ew::with_compare;
using ew::with_unary;

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

// Whether a and b mix a 16-bit float with another floating dtype. Those promote (to
// promote_floating's dtype) where check_same would refuse, as in PyTorch, so that a
// bfloat16 activation meets a float32 one under autocast; float32 with float64 is still
// refused, as weft always has.
namespace {
bool mixes_half(const Tensor& a, const Tensor& b) {
  return a.defined() && b.defined() && a.dtype() != b.dtype() && is_floating(a.dtype()) && is_floating(b.dtype()) &&
         (is_half(a.dtype()) || is_half(b.dtype()));
}

// An in-place op's source, checked against dst: a 16-bit source for a wider destination
// is widened (exactly); a 16-bit destination takes any floating source (the half backend
// computes in float32 and rounds into dst; a float64 source is made float32 first).
Tensor in_place_source(const char* op, const Tensor& dst, const Tensor& src) {
  if (!mixes_half(dst, src)) {
    check_same(op, dst, src);
    return src;
  }
  WEFT_CHECK(dst.device() == src.device(), op, ": tensors are on different devices, ", dst.device(), " ",
             dst.shape(), " and ", src.device(), " ", src.shape());
  if (is_half(dst.dtype())) return src.dtype() == kFloat64 ? to_dtype(src, kFloat32) : src;
  return to_dtype(src, dst.dtype());
}

std::pair<Tensor, Tensor> promoted(const Tensor& a, const Tensor& b) {
  const DType t = promote_floating(a.dtype(), b.dtype());
  return {to_dtype(a, t), to_dtype(b, t)};
}
}  // namespace

void check_cpu(const char* op, const Tensor& a) {
  WEFT_CHECK(a.defined(), op, ": the input tensor is undefined");
  WEFT_CHECK(a.device().is_cpu(), op, ": no CUDA kernel in this build for a tensor on ", a.device());
}

void check_writable(const char* op, const Tensor& dst) {
  for (int64_t d = 0; d < dst.dim(); ++d)
    WEFT_CHECK(dst.size(d) <= 1 || dst.strides()[d] != 0, op, ": the destination of shape ", dst.shape(),
               " and strides ", dst.strides(), " is an expanded view whose elements share memory; an in-place "
               "write would land on one element several times (write into a .contiguous() copy instead)");
}

Tensor binary(Binary op, const Tensor& a, const Tensor& b) {
  if (mixes_half(a, b)) {
    const auto [pa, pb] = promoted(a, b);
    return binary(op, pa, pb);
  }
  const char* name = binary_name(op);
  check_same(name, a, b);
  Tensor out = empty(broadcast_shapes(name, a.shape(), b.shape()), a.dtype(), a.device());
  if (routed(a)) {
    backend_for(a).binary(op, out, a, b);
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
  if (routed(a)) {
    backend_for(a).binary_scalar(op, out, a, s, /*scalar_first=*/false);
    return out;
  }
  dispatch_numeric(a.dtype(), name, [&]<class T>() {
    const T v = static_cast<T>(s);
    with_binary<T>(op, [&](auto f) { run2<T, T>(out, a, ew::ScalarRight<decltype(f), T>{f, v}); });
  });
  return out;
}
Tensor scalar_binary(Binary op, double s, const Tensor& a) {
  check_defined(binary_name(op), a);
  if (routed(a)) {  // the scalar rides in the kernel's arguments, not in a 0-d tensor
    Tensor out = empty(a.shape(), a.dtype(), a.device());
    backend_for(a).binary_scalar(op, out, a, s, /*scalar_first=*/true);
    return out;
  }
  return binary(op, scalar_like(a, s), a);
}

Tensor unary(Unary op, const Tensor& a) {
  check_defined("unary", a);
  Tensor out = empty(a.shape(), a.dtype(), a.device());
  if (routed(a)) {
    backend_for(a).unary(op, out, a);
    return out;
  }
  dispatch_numeric(a.dtype(), "unary", [&]<class T>() {
    with_unary<T>(op, [&](auto f) { run2<T, T>(out, a, f); });
  });
  return out;
}

Tensor compare(Compare op, const Tensor& a, const Tensor& b) {
  if (mixes_half(a, b)) {
    const auto [pa, pb] = promoted(a, b);
    return compare(op, pa, pb);
  }
  check_same("compare", a, b);
  Tensor out = empty(broadcast_shapes("compare", a.shape(), b.shape()), kBool, a.device());
  if (routed(a)) {
    backend_for(a).compare(op, out, a, b);
    return out;
  }
  dispatch_all(a.dtype(), [&]<class T>() {
    with_compare<T>(op, [&](auto f) { run3<bool, T, T>(out, a, b, f); });
  });
  return out;
}

Tensor compare_scalar(Compare op, const Tensor& a, double s) {
  check_defined("compare", a);
  if (routed(a)) {
    Tensor out = empty(a.shape(), kBool, a.device());
    backend_for(a).compare_scalar(op, out, a, s);
    return out;
  }
  return compare(op, a, scalar_like(a, s));
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  if (mixes_half(a, b)) {
    const auto [pa, pb] = promoted(a, b);
    return where(cond, pa, pb);
  }
  check_same("where", a, b);
  WEFT_CHECK(cond.dtype() == kBool, "where: the condition must be a bool tensor, got ", cond.dtype());
  WEFT_CHECK(cond.device() == a.device(), "where: the condition is on ", cond.device(), ", the values on ",
             a.device());
  const Shape shape = broadcast_shapes("where", broadcast_shapes("where", cond.shape(), a.shape()), b.shape());
  Tensor out = empty(shape, a.dtype(), a.device());
  if (routed(a)) {
    backend_for(a).where(out, cond, a, b);
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

void binary_(Binary op, const Tensor& dst, const Tensor& src_in) {
  const char* name = binary_name(op);
  const Tensor src = in_place_source(name, dst, src_in);
  check_writable(name, dst);
  WEFT_CHECK(broadcast_shapes(name, dst.shape(), src.shape()) == dst.shape(), name, "_: in-place result of shape ",
             broadcast_shapes(name, dst.shape(), src.shape()), " does not fit the destination ", dst.shape());
  if (routed(dst)) {
    backend_for(dst).binary(op, dst, dst, src);
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
  check_writable(binary_name(op), dst);
  if (routed(dst)) {
    backend_for(dst).binary_scalar(op, dst, dst, s, /*scalar_first=*/false);
    dst.storage()->bump_version();
    return;
  }
  binary_(op, dst, scalar_like(dst, s));
}

void axpy_(const Tensor& dst, double alpha, const Tensor& src_in) {
  const Tensor src = in_place_source("axpy_", dst, src_in);
  check_writable("axpy_", dst);
  WEFT_CHECK(broadcast_shapes("axpy_", dst.shape(), src.shape()) == dst.shape(), "axpy_: source ", src.shape(),
             " does not broadcast to the destination ", dst.shape());
  if (routed(dst)) {
    backend_for(dst).axpy(dst, alpha, src);
    dst.storage()->bump_version();
    return;
  }
  dispatch_floating(dst.dtype(), "axpy_", [&]<class T>() {
    const T al = static_cast<T>(alpha);
    run3<T, T, T>(dst, dst, src, ew::Axpy<T>{al});
  });
  dst.storage()->bump_version();
}

// gin = grad * f'(out): one pass for the backward of relu, sigmoid and tanh.
Tensor activation_backward(Activation act, const Tensor& grad, const Tensor& out) {
  const char* name = ew::activation_backward_name(act);
  check_same(name, grad, out);
  Tensor gi = empty(grad.shape(), grad.dtype(), grad.device());
  if (routed(grad)) {
    backend_for(grad).activation_backward(act, gi, grad, out);
    return gi;
  }
  dispatch_floating(grad.dtype(), name, [&]<class T>() {
    ew::with_activation_backward<T>(act, [&](auto f) { run3<T, T, T>(gi, grad, out, f); });
  });
  return gi;
}

Tensor relu_backward(const Tensor& grad, const Tensor& out) { return activation_backward(Activation::Relu, grad, out); }
Tensor sigmoid_backward(const Tensor& grad, const Tensor& out) {
  return activation_backward(Activation::Sigmoid, grad, out);
}
Tensor tanh_backward(const Tensor& grad, const Tensor& out) { return activation_backward(Activation::Tanh, grad, out); }

// out = f(x) for gelu / silu / leaky_relu / softplus; out has x's shape.
Tensor input_activation(InputActivation act, const Tensor& x, const ActivationParams& p) {
  const char* name = ew::input_activation_name(act, /*backward=*/false);
  check_defined(name, x);
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  if (routed(x)) {
    backend_for(x).input_activation(act, p, out, x);
    return out;
  }
  dispatch_floating(x.dtype(), name, [&]<class T>() {
    ew::with_input_activation<T>(act, p, [&](auto f) { run2<T, T>(out, x, f); });
  });
  return out;
}

// gin = grad * f'(x): the backward reads the forward's input, not its output.
Tensor input_activation_backward(InputActivation act, const Tensor& grad, const Tensor& x, const ActivationParams& p) {
  const char* name = ew::input_activation_name(act, /*backward=*/true);
  check_same(name, grad, x);
  WEFT_CHECK(grad.shape() == x.shape(), name, ": the gradient ", grad.shape(), " and the input ", x.shape(),
             " differ in shape");
  Tensor gi = empty(x.shape(), x.dtype(), x.device());
  if (routed(x)) {
    backend_for(x).input_activation_backward(act, p, gi, grad, x);
    return gi;
  }
  dispatch_floating(x.dtype(), name, [&]<class T>() {
    ew::with_input_activation_backward<T>(act, p, [&](auto f) { run3<T, T, T>(gi, grad, x, f); });
  });
  return gi;
}

}  // namespace weft::raw
