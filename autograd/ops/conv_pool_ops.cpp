// Convolution, pooling and dropout, each with its backward formula beside it.
//
// The heavy lifting is in tensor/cpu/conv.cpp and pool.cpp; here each forward saves what
// its backward needs and no more: conv keeps x and w (each one's gradient needs the
// other), max pooling keeps its input, average pooling keeps nothing but
// shapes, and dropout keeps its scaled mask.
#include "../../tensor/creation.h"
#include "../autocast.h"
#include "../functions.h"
#include "../tape.h"

namespace weft {

using autograd::BackwardArgs;
using autograd::needs_recording;
using autograd::record;
using Grads = std::vector<Tensor>;

// x (N,C,H,W), w (K,C/groups,kh,kw), b (K) or undefined -> out (N,K,Ho,Wo)
//   dx = conv_transpose(grad, w), dw = sum_n grad_n (x) cols(x_n), db = grad summed over N, Ho, Wo
Tensor conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Conv2dParams& p) {
  // autocast's lower-precision list
  const Tensor x = autocast::lower(x_in), w = autocast::lower(w_in), b = autocast::lower(b_in);
  Tensor out = raw::conv2d(x, w, b, p);
  if (!needs_recording({&x, &w, &b})) return out;
  return record("conv2d", out, {x, w, b}, {x, w},
                [p, xs = x.shape(), ws = w.shape()](const BackwardArgs& g) -> Grads {
                  const Tensor &x = g.saved[0], &w = g.saved[1];
                  Tensor gx = g.needs_grad[0] ? raw::conv2d_backward_input(g.grad, w, xs, p) : Tensor();
                  // The bias gradient comes with the weight's when both are needed (one pass).
                  Tensor gb;
                  Tensor gw = g.needs_grad[1]
                                  ? raw::conv2d_backward_weight(g.grad, x, ws, p, g.needs_grad[2] ? &gb : nullptr)
                                  : Tensor();
                  if (g.needs_grad[2] && !gb.defined()) gb = raw::reduce(raw::Reduce::Sum, g.grad, {0, 2, 3}, false);
                  return {gx, gw, gb};
                });
}

// x (N,C,H,W) -> out (N,C,Ho,Wo). Each output's gradient goes to the one input pixel that
// won its window, found again in the saved x. Saving x usually costs nothing: it is the
// previous ReLU's output, which that ReLU saved already (same storage).
Tensor max_pool2d(const Tensor& x, const Pool2dParams& p) {
  Tensor out = raw::max_pool2d(x, p);
  if (!needs_recording(x)) return out;
  return record("max_pool2d", out, {x}, {x}, [p](const BackwardArgs& g) -> Grads {
    return {raw::max_pool2d_backward(g.grad, g.saved[0], p)};
  });
}

// x (N,C,H,W) -> max_pool2d(relu(x)), the two in one pass (nn::Sequential uses it for a
// ReLU followed by a MaxPool2d). Saves x, the input before relu: the gradient goes to
// the window's winner when that winner is > 0, which relu's backward would have checked.
Tensor relu_max_pool2d(const Tensor& x, const Pool2dParams& p) {
  Tensor out = raw::relu_max_pool2d(x, p);
  if (!needs_recording(x)) return out;
  return record("relu_max_pool2d", out, {x}, {x}, [p](const BackwardArgs& g) -> Grads {
    return {raw::relu_max_pool2d_backward(g.grad, g.saved[0], p)};
  });
}

// x (N,C,H,W) -> out (N,C,Ho,Wo). Each output spreads its gradient evenly over its
// window, divided by the same count the forward divided by.
Tensor avg_pool2d(const Tensor& x, const Pool2dParams& p) {
  Tensor out = raw::avg_pool2d(x, p);
  if (!needs_recording(x)) return out;
  return record("avg_pool2d", out, {x}, {}, [p, xs = x.shape()](const BackwardArgs& g) -> Grads {
    return {raw::avg_pool2d_backward(g.grad, xs, p)};
  });
}

// x (any shape) -> out (same shape) = x * mask, where mask is 0 with probability p and
// 1/(1-p) otherwise, so E[out] = x and the next layer sees the same scale in training
// and in eval. d out / dx = mask.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  WEFT_CHECK(x.defined(), "dropout: the input tensor is undefined");
  WEFT_CHECK(is_floating(x.dtype()), "dropout: expected a floating-point tensor, got ", dtype_name(x.dtype()), " ",
             x.shape());
  WEFT_CHECK(p >= 0 && p <= 1, "dropout: p must be in [0, 1], got ", p, " (input ", x.shape(), ")");
  if (!training || p == 0) return x;
  // p == 1 keeps nothing: the mask is all zeros and there is no 1/(1-p) to take.
  Tensor mask = bernoulli(x.shape(), 1 - p, {.dtype = x.dtype(), .device = x.device()}, gen);
  if (p < 1) raw::binary_scalar_(raw::Binary::Mul, mask, 1 / (1 - p));
  Tensor out = raw::binary(raw::Binary::Mul, x, mask);
  if (!needs_recording(x)) return out;
  return record("dropout", out, {x}, {mask}, [](const BackwardArgs& g) -> Grads {
    return {raw::binary(raw::Binary::Mul, g.grad, g.saved[0])};
  });
}

}  // namespace weft
