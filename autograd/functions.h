// The differentiable ops as free functions, PyTorch-style: weft::matmul(a, b),
// weft::conv2d(x, w, b, {...}). The Tensor methods and operators call these.
//
// Each is defined in autograd/ops/ next to its backward closure. When grad mode is on
// and an input requires grad, the op records one tape entry (see tape.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

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
// Layer normalisation over the last n elements of each row, with the optional affine w
// and b (n elements each), in one fused CPU kernel forward and backward
// (tensor/cpu/layer_norm.cpp). x must be a contiguous float or double CPU tensor:
// nn::LayerNorm calls it there and composes ordinary ops everywhere else.
Tensor fused_layer_norm(const Tensor& x, int64_t n, const Tensor& w, const Tensor& b, double eps);
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

// ---- joining, splitting, masking, selecting (autograd/ops/select_ops.cpp) -----------
// n tensors of one shape S -> S with a new dim of size n at dim (negative counts from
// the end of the result).
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Views along dim (narrow), differentiable through them: pieces of split_size (the last
// may be shorter), or of the given sizes, which must add up to the dim's size.
std::vector<Tensor> split(const Tensor& t, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& t, const std::vector<int64_t>& sizes, int64_t dim = 0);
// PyTorch's chunk: pieces of ceil(size / chunks), so possibly fewer than chunks.
std::vector<Tensor> chunk(const Tensor& t, int64_t chunks, int64_t dim = 0);
// min(max(t, min), max), at least one bound given; NaN propagates; the gradient is 1 on
// the closed interval [min, max] and 0 outside it (and at NaN).
Tensor clamp(const Tensor& t, std::optional<double> min, std::optional<double> max = std::nullopt);
// t with value where the bool mask (broadcasting to t's shape) holds; gradient 0 there.
Tensor masked_fill(const Tensor& t, const Tensor& mask, double value);
// The entries of t where the bool mask holds (both broadcast together), as a 1-D tensor
// in row-major order; the gradient scatters back to those entries.
Tensor masked_select(const Tensor& t, const Tensor& mask);
// {values, int64 indices} of the k largest (smallest) along dim, best first; NaN counts
// as the largest, ties go to the lower index. Values are differentiable.
std::pair<Tensor, Tensor> topk(const Tensor& t, int64_t k, int64_t dim = -1, bool largest = true, bool sorted = true);
// The running sum along dim (int64 for bool and int64 t).
Tensor cumsum(const Tensor& t, int64_t dim);

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
