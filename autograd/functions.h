// The differentiable ops as free functions, PyTorch-style: weft::matmul(a, b),
// weft::conv2d(x, w, b, {...}). The Tensor methods and operators call these.
//
// Each is defined in autograd/ops/ next to its backward closure. When grad mode is on
// and an input requires grad, the op records one tape entry (see tape.h).
#pragma once

#include <cstdint>
#include <string_view>

#include "../tensor/generator.h"
#include "../tensor/raw.h"
#include "../tensor/tensor.h"

namespace weft {


// ---- elementwise (autograd/ops/elementwise_ops.cpp) ----------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor sub(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor div(const Tensor& a, double s);
Tensor rsub(const Tensor& a, double s);  // s - a
Tensor rdiv(const Tensor& a, double s);  // s / a
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor pow(const Tensor& a, double exponent);
Tensor pow(const Tensor& a, const Tensor& exponent);
Tensor abs(const Tensor& a);
Tensor relu(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor tanh(const Tensor& a);
// Activations whose backward reads the input x, with PyTorch's semantics and defaults
// (tensor/elementwise_math.h says where NaN and infinities go; the gradient of
// leaky_relu at NaN is grad * slope, not NaN, as in PyTorch).
// gelu: x Phi(x) (Phi the normal CDF, through erf) for approximate "none", or
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) for "tanh"; anything else throws.
Tensor gelu(const Tensor& x, std::string_view approximate = "none");
Tensor silu(const Tensor& x);                                      // x sigmoid(x)
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);  // x > 0 ? x : slope x
// log(1 + exp(beta x)) / beta, and x itself where beta x > threshold
Tensor softplus(const Tensor& x, double beta = 1.0, double threshold = 20.0);
// Elementwise max/min; NaN wins. The gradient goes to the winner, a tie splits it
// 0.5/0.5 and a NaN sends all of it to both inputs, as in PyTorch.
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
// cond ? a : b elementwise, with broadcasting; cond is a bool tensor.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// ---- reductions (autograd/ops/reduce_ops.cpp) ----------------------------------------
Tensor sum(const Tensor& a, const Shape& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& a, const Shape& dims = {}, bool keepdim = false);
// Max/min over `dims` (all when empty). Tied extremes share the gradient equally, as in
// PyTorch's amax (a NaN extreme gives a NaN gradient). Tensor::max(dim) instead sends it
// to the one index argmax(dim) picks, and Tensor::max() shares it among NaNs too.
Tensor amax(const Tensor& a, const Shape& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& a, const Shape& dims = {}, bool keepdim = false);

// ---- linear algebra, softmax, indexing (autograd/ops/nn_ops.cpp) ---------------------
Tensor matmul(const Tensor& a, const Tensor& b);
// x (..., in) @ w (out, in)^T + b (out) -> (..., out); b may be undefined. w_t, when
// given, is a contiguous copy of w's transpose used for speed only (raw::linear): the
// gradient goes to w.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(), const Tensor& w_t = Tensor());
Tensor softmax(const Tensor& a, int64_t dim);
Tensor log_softmax(const Tensor& a, int64_t dim);
Tensor gather(const Tensor& a, int64_t dim, const Tensor& index);
Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index);

// ---- convolution, pooling, dropout (autograd/ops/conv_pool_ops.cpp) ------------------
// x (N,C,H,W), w (K,C/groups,kh,kw), bias (K) or an undefined Tensor -> (N,K,Ho,Wo)
// with Ho = (H + 2*pad - dil*(kh-1) - 1) / stride + 1 (likewise Wo).
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor(), const Conv2dParams& p = {});
// x (N,C,H,W) -> (N,C,Ho,Wo); max pooling pads with -infinity.
Tensor max_pool2d(const Tensor& x, const Pool2dParams& p = {});
// max_pool2d(x.relu(), p) in one pass over x, with the same values and gradients.
Tensor relu_max_pool2d(const Tensor& x, const Pool2dParams& p = {});
Tensor avg_pool2d(const Tensor& x, const Pool2dParams& p = {});
// In training, zeroes each element with probability p and scales the rest by 1/(1-p);
// the identity when !training or p == 0.
Tensor dropout(const Tensor& x, double p, bool training = true, Generator& gen = default_generator());

// ---- views (autograd/ops/view_ops.cpp) ---------------------------------------------
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);

// ---- operators -----------------------------------------------------------------------
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, double s) { return add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return sub(a, s); }
inline Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return div(a, s); }
inline Tensor operator+(double s, const Tensor& a) { return add(a, s); }
inline Tensor operator-(double s, const Tensor& a) { return rsub(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
inline Tensor operator/(double s, const Tensor& a) { return rdiv(a, s); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator<(const Tensor& a, const Tensor& b) { return a.lt(b); }
inline Tensor operator<=(const Tensor& a, const Tensor& b) { return a.le(b); }
inline Tensor operator>(const Tensor& a, const Tensor& b) { return a.gt(b); }
inline Tensor operator>=(const Tensor& a, const Tensor& b) { return a.ge(b); }
inline Tensor operator<(const Tensor& a, double s) { return raw::compare_scalar(raw::Compare::Lt, a, s); }
inline Tensor operator<=(const Tensor& a, double s) { return raw::compare_scalar(raw::Compare::Le, a, s); }
inline Tensor operator>(const Tensor& a, double s) { return raw::compare_scalar(raw::Compare::Gt, a, s); }
inline Tensor operator>=(const Tensor& a, double s) { return raw::compare_scalar(raw::Compare::Ge, a, s); }

}  // namespace weft
