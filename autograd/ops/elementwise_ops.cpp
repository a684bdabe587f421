// Elementwise ops and their backward formulas.
//
// Broadcasting makes a gradient larger than its input (a bias (C) added to (N,C) gets an
// (N,C) gradient); raw::sum_to folds it back to the input's shape.
#include "../../tensor/creation.h"
#include "../functions.h"
#include "../tape.h"

namespace weft {

using autograd::BackwardArgs;
using autograd::needs_recording;
using autograd::record;
using raw::Binary;
using raw::Unary;
using Grads = std::vector<Tensor>;

namespace {
// The gradient for input i, folded to its shape, or undefined when not needed.
Tensor fold(const BackwardArgs& g, size_t i, const Tensor& grad, const Shape& shape) {
  return g.needs_grad[i] ? raw::sum_to(grad, shape) : Tensor();
}

// x with 0 where `mask` (bool, broadcasting) holds: PyTorch's masked zeros in the
// backward formulas that must not turn 0 * inf into NaN.
Tensor zero_where(const Tensor& mask, const Tensor& x) {
  return raw::where(mask, zeros({}, {.dtype = x.dtype(), .device = x.device()}), x);
}
}  // namespace

// a (A), b (B) -> out (broadcast(A, B))
Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = raw::binary(Binary::Add, a, b);
  if (!needs_recording(a, b)) return out;
  return record("add", out, {a, b}, {}, [sa = a.shape(), sb = b.shape()](const BackwardArgs& g) -> Grads {
    return {fold(g, 0, g.grad, sa), fold(g, 1, g.grad, sb)};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = raw::binary(Binary::Sub, a, b);
  if (!needs_recording(a, b)) return out;
  return record("sub", out, {a, b}, {}, [sa = a.shape(), sb = b.shape()](const BackwardArgs& g) -> Grads {
    return {fold(g, 0, g.grad, sa), g.needs_grad[1] ? raw::sum_to(raw::unary(Unary::Neg, g.grad), sb) : Tensor()};
  });
}

// d(a*b) = b da + a db
Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = raw::binary(Binary::Mul, a, b);
  if (!needs_recording(a, b)) return out;
  return record("mul", out, {a, b}, {a, b}, [](const BackwardArgs& g) -> Grads {
    const Tensor &a = g.saved[0], &b = g.saved[1];
    return {g.needs_grad[0] ? raw::sum_to(raw::binary(Binary::Mul, g.grad, b), a.shape()) : Tensor(),
            g.needs_grad[1] ? raw::sum_to(raw::binary(Binary::Mul, g.grad, a), b.shape()) : Tensor()};
  });
}

// d(a/b) = da / b - a db / b^2
Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = raw::binary(Binary::Div, a, b);
  if (!needs_recording(a, b)) return out;
  return record("div", out, {a, b}, {a, b}, [](const BackwardArgs& g) -> Grads {
    const Tensor &a = g.saved[0], &b = g.saved[1];
    Tensor ga = g.needs_grad[0] ? raw::sum_to(raw::binary(Binary::Div, g.grad, b), a.shape()) : Tensor();
    Tensor gb;
    if (g.needs_grad[1]) {
      Tensor t = raw::binary(Binary::Div, raw::binary(Binary::Mul, g.grad, a), raw::unary(Unary::Square, b));
      gb = raw::sum_to(raw::unary(Unary::Neg, t), b.shape());
    }
    return {ga, gb};
  });
}

Tensor add(const Tensor& a, double s) {
  Tensor out = raw::binary_scalar(Binary::Add, a, s);
  if (!needs_recording(a)) return out;
  return record("add_scalar", out, {a}, {}, [](const BackwardArgs& g) -> Grads { return {g.grad}; });
}

Tensor sub(const Tensor& a, double s) { return add(a, -s); }

Tensor mul(const Tensor& a, double s) {
  Tensor out = raw::binary_scalar(Binary::Mul, a, s);
  if (!needs_recording(a)) return out;
  return record("mul_scalar", out, {a}, {}, [s](const BackwardArgs& g) -> Grads {
    return {raw::binary_scalar(Binary::Mul, g.grad, s)};
  });
}

Tensor div(const Tensor& a, double s) { return mul(a, 1.0 / s); }

// s - a
Tensor rsub(const Tensor& a, double s) {
  Tensor out = raw::scalar_binary(Binary::Sub, s, a);
  if (!needs_recording(a)) return out;
  return record("rsub", out, {a}, {}, [](const BackwardArgs& g) -> Grads { return {raw::unary(Unary::Neg, g.grad)}; });
}

// s / a; d/da = -s / a^2 = -out / a
Tensor rdiv(const Tensor& a, double s) {
  Tensor out = raw::scalar_binary(Binary::Div, s, a);
  if (!needs_recording(a)) return out;
  return record("rdiv", out, {a}, {a, out}, [](const BackwardArgs& g) -> Grads {
    Tensor t = raw::binary(Binary::Div, raw::binary(Binary::Mul, g.grad, g.saved[1]), g.saved[0]);
    return {raw::unary(Unary::Neg, t)};
  });
}

Tensor neg(const Tensor& a) {
  Tensor out = raw::unary(Unary::Neg, a);
  if (!needs_recording(a)) return out;
  return record("neg", out, {a}, {}, [](const BackwardArgs& g) -> Grads { return {raw::unary(Unary::Neg, g.grad)}; });
}

// d exp(a) = exp(a) da: save the output, not the input.
Tensor exp(const Tensor& a) {
  Tensor out = raw::unary(Unary::Exp, a);
  if (!needs_recording(a)) return out;
  return record("exp", out, {a}, {out}, [](const BackwardArgs& g) -> Grads {
    return {raw::binary(Binary::Mul, g.grad, g.saved[0])};
  });
}

Tensor log(const Tensor& a) {
  Tensor out = raw::unary(Unary::Log, a);
  if (!needs_recording(a)) return out;
  return record("log", out, {a}, {a}, [](const BackwardArgs& g) -> Grads {
    return {raw::binary(Binary::Div, g.grad, g.saved[0])};
  });
}

// d sqrt(a) = da / (2 sqrt(a))
Tensor sqrt(const Tensor& a) {
  Tensor out = raw::unary(Unary::Sqrt, a);
  if (!needs_recording(a)) return out;
  return record("sqrt", out, {a}, {out}, [](const BackwardArgs& g) -> Grads {
    return {raw::binary(Binary::Div, raw::binary_scalar(Binary::Mul, g.grad, 0.5), g.saved[0])};
  });
}

// d a^e = e a^(e-1) da; 0 for e = 0 (a^0 is constant), where e a^(e-1) would give
// 0 * inf = NaN at a = 0. PyTorch's pow_backward does the same.
Tensor pow(const Tensor& a, double e) {
  Tensor out = raw::binary_scalar(Binary::Pow, a, e);
  if (!needs_recording(a)) return out;
  return record("pow", out, {a}, {a}, [e](const BackwardArgs& g) -> Grads {
    if (e == 0) return {zeros(g.saved[0].shape(), {.dtype = g.grad.dtype(), .device = g.grad.device()})};
    Tensor d = raw::binary_scalar(Binary::Mul, raw::binary_scalar(Binary::Pow, g.saved[0], e - 1), e);
    return {raw::binary(Binary::Mul, g.grad, d)};
  });
}

// d a^b = b a^(b-1) da + a^b log(a) db, with PyTorch's two exceptions (pow_backward_self
// and pow_backward_exponent): the base gets 0 where b = 0, and the exponent gets 0 where
// a = 0 and b >= 0 (a^b is 0 or 1 there and log(a) = -inf would make 0 * -inf = NaN; a
// negative b keeps out * log(a) = inf * -inf = -inf, as PyTorch's does).
Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = raw::binary(Binary::Pow, a, b);
  if (!needs_recording(a, b)) return out;
  return record("pow", out, {a, b}, {a, b, out}, [](const BackwardArgs& g) -> Grads {
    const Tensor &a = g.saved[0], &b = g.saved[1], &out = g.saved[2];
    Tensor ga, gb;
    if (g.needs_grad[0]) {
      Tensor d = raw::binary(Binary::Mul, b, raw::binary(Binary::Pow, a, raw::binary_scalar(Binary::Sub, b, 1)));
      d = zero_where(raw::compare_scalar(raw::Compare::Eq, b, 0), raw::binary(Binary::Mul, g.grad, d));
      ga = raw::sum_to(d, a.shape());
    }
    if (g.needs_grad[1]) {
      Tensor d = raw::binary(Binary::Mul, out, raw::unary(Unary::Log, a));
      // where a == 0: 0 if b >= 0, else d
      d = raw::where(raw::compare_scalar(raw::Compare::Eq, a, 0),
                     zero_where(raw::compare_scalar(raw::Compare::Ge, b, 0), d), d);
      gb = raw::sum_to(raw::binary(Binary::Mul, g.grad, d), b.shape());
    }
    return {ga, gb};
  });
}

// d|a| = sign(a) da (0 at 0, like PyTorch)
Tensor abs(const Tensor& a) {
  Tensor out = raw::unary(Unary::Abs, a);
  if (!needs_recording(a)) return out;
  return record("abs", out, {a}, {a}, [](const BackwardArgs& g) -> Grads {
    return {raw::binary(Binary::Mul, g.grad, raw::unary(Unary::Sign, g.saved[0]))};
  });
}

Tensor relu(const Tensor& a) {
  Tensor out = raw::unary(Unary::Relu, a);
  if (!needs_recording(a)) return out;
  return record("relu", out, {a}, {out}, [](const BackwardArgs& g) -> Grads {
    return {raw::relu_backward(g.grad, g.saved[0])};
  });
}

Tensor sigmoid(const Tensor& a) {
  Tensor out = raw::unary(Unary::Sigmoid, a);
  if (!needs_recording(a)) return out;
  return record("sigmoid", out, {a}, {out}, [](const BackwardArgs& g) -> Grads {
    return {raw::sigmoid_backward(g.grad, g.saved[0])};
  });
}

Tensor tanh(const Tensor& a) {
  Tensor out = raw::unary(Unary::Tanh, a);
  if (!needs_recording(a)) return out;
  return record("tanh", out, {a}, {out}, [](const BackwardArgs& g) -> Grads {
    return {raw::tanh_backward(g.grad, g.saved[0])};
  });
}

namespace {
// gelu, silu, leaky_relu and softplus: each saves its input x, which its backward
// (raw::input_activation_backward) differentiates at, together with its parameters.
Tensor input_activation(const char* name, raw::InputActivation act, const Tensor& x,
                        const raw::ActivationParams& p = {}) {
  Tensor out = raw::input_activation(act, x, p);
  if (!needs_recording(x)) return out;
  return record(name, out, {x}, {x}, [act, p](const BackwardArgs& g) -> Grads {
    return {raw::input_activation_backward(act, g.grad, g.saved[0], p)};
  });
}
}  // namespace

// x (any shape) -> out (same shape), here and in the three below.
Tensor gelu(const Tensor& x, std::string_view approximate) {
  WEFT_CHECK(approximate == "none" || approximate == "tanh", "gelu: approximate must be 'none' or 'tanh', got '",
             approximate, "'");
  return input_activation("gelu", approximate == "tanh" ? raw::InputActivation::GeluTanh : raw::InputActivation::Gelu,
                          x);
}

Tensor silu(const Tensor& x) { return input_activation("silu", raw::InputActivation::Silu, x); }

Tensor leaky_relu(const Tensor& x, double negative_slope) {
  return input_activation("leaky_relu", raw::InputActivation::LeakyRelu, x, {.negative_slope = negative_slope});
}

Tensor softplus(const Tensor& x, double beta, double threshold) {
  return input_activation("softplus", raw::InputActivation::Softplus, x, {.beta = beta, .threshold = threshold});
}

namespace {
// maximum/minimum, with PyTorch's gradient: the input that won gets all of it, a tie
// splits it 0.5/0.5, and where either input is NaN (so is the output) both get all of
// it. `loses` is the comparison under which the left operand lost (Lt for maximum).
Tensor extremum(const char* name, Binary op, raw::Compare loses, const Tensor& a, const Tensor& b) {
  Tensor out = raw::binary(op, a, b);
  if (!needs_recording(a, b)) return out;
  return record(name, out, {a, b}, {a, b}, [loses](const BackwardArgs& g) -> Grads {
    const Tensor &a = g.saved[0], &b = g.saved[1];
    const Tensor share = raw::where(raw::compare(raw::Compare::Eq, a, b), raw::binary_scalar(Binary::Div, g.grad, 2),
                                    g.grad);  // broadcast(A, B)
    return {g.needs_grad[0] ? raw::sum_to(zero_where(raw::compare(loses, a, b), share), a.shape()) : Tensor(),
            g.needs_grad[1] ? raw::sum_to(zero_where(raw::compare(loses, b, a), share), b.shape()) : Tensor()};
  });
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return extremum("maximum", Binary::Maximum, raw::Compare::Lt, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum("minimum", Binary::Minimum, raw::Compare::Gt, a, b); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor out = raw::where(cond, a, b);
  if (!needs_recording(a, b)) return out;
  return record("where", out, {a, b}, {cond}, [sa = a.shape(), sb = b.shape()](const BackwardArgs& g) -> Grads {
    Tensor zero = zeros({}, {.dtype = g.grad.dtype(), .device = g.grad.device()});
    return {g.needs_grad[0] ? raw::sum_to(raw::where(g.saved[0], g.grad, zero), sa) : Tensor(),
            g.needs_grad[1] ? raw::sum_to(raw::where(g.saved[0], zero, g.grad), sb) : Tensor()};
  });
}

// ---- Tensor methods that forward to the free functions -------------------------------
Tensor Tensor::add(const Tensor& o) const { return weft::add(*this, o); }
Tensor Tensor::sub(const Tensor& o) const { return weft::sub(*this, o); }
Tensor Tensor::mul(const Tensor& o) const { return weft::mul(*this, o); }
Tensor Tensor::div(const Tensor& o) const { return weft::div(*this, o); }
Tensor Tensor::neg() const { return weft::neg(*this); }
Tensor Tensor::exp() const { return weft::exp(*this); }
Tensor Tensor::log() const { return weft::log(*this); }
Tensor Tensor::sqrt() const { return weft::sqrt(*this); }
Tensor Tensor::pow(double e) const { return weft::pow(*this, e); }
Tensor Tensor::pow(const Tensor& e) const { return weft::pow(*this, e); }
Tensor Tensor::abs() const { return weft::abs(*this); }
Tensor Tensor::relu() const { return weft::relu(*this); }
Tensor Tensor::sigmoid() const { return weft::sigmoid(*this); }
Tensor Tensor::tanh() const { return weft::tanh(*this); }
Tensor Tensor::gelu(std::string_view approximate) const { return weft::gelu(*this, approximate); }
Tensor Tensor::silu() const { return weft::silu(*this); }
Tensor Tensor::leaky_relu(double negative_slope) const { return weft::leaky_relu(*this, negative_slope); }
Tensor Tensor::softplus(double beta, double threshold) const { return weft::softplus(*this, beta, threshold); }
Tensor Tensor::eq(const Tensor& o) const { return raw::compare(raw::Compare::Eq, *this, o); }
Tensor Tensor::ne(const Tensor& o) const { return raw::compare(raw::Compare::Ne, *this, o); }
Tensor Tensor::lt(const Tensor& o) const { return raw::compare(raw::Compare::Lt, *this, o); }
Tensor Tensor::le(const Tensor& o) const { return raw::compare(raw::Compare::Le, *this, o); }
Tensor Tensor::gt(const Tensor& o) const { return raw::compare(raw::Compare::Gt, *this, o); }
Tensor Tensor::ge(const Tensor& o) const { return raw::compare(raw::Compare::Ge, *this, o); }

}  // namespace weft
