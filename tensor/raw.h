// Raw ops: check their inputs, compute a result, and never touch the autograd tape.
//
// These are what the differentiable ops in autograd/ops/ call for their forward and
// backward math, and what optimizers and data loaders use directly. Each checks shapes,
// dtypes and devices and throws weft::Error naming the op; then it dispatches on the
// device (the CPU kernels of tensor/cpu/, or the registered backend of any other device
// kind -- backend.h; cuda/ registers one when weft is built with CUDA) and on the dtype.
#pragma once

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "size2.h"
#include "tensor.h"

namespace weft {
class Generator;

// Convolution and pooling settings. They live in namespace weft (not raw) so that
// argument-dependent lookup finds only the differentiable weft::conv2d for user code.
struct Conv2dParams {
  Size2 stride{1, 1};
  Size2 padding{0, 0};
  Size2 dilation{1, 1};
  int64_t groups = 1;
};
struct Pool2dParams {
  Size2 kernel{2, 2};
  Size2 stride{2, 2};
  Size2 padding{0, 0};
  Size2 dilation{1, 1};  // max pooling only
  bool count_include_pad = true;          // average pooling only
};
}

namespace weft::raw {

// ---- copies and layout ------------------------------------------------------------
Tensor contiguous(const Tensor& a);         // `a` itself when already contiguous
Tensor clone(const Tensor& a);              // always a fresh contiguous copy
Tensor to_dtype(const Tensor& a, DType dt); // `a` itself when already of that dtype
Tensor to_device(const Tensor& a, Device d);
void copy_(const Tensor& dst, const Tensor& src);  // src broadcasts to dst's shape; any dtypes
void fill_(const Tensor& dst, double value);

// ---- elementwise ------------------------------------------------------------------
enum class Binary { Add, Sub, Mul, Div, Pow, Maximum, Minimum };
enum class Unary { Neg, Exp, Log, Sqrt, Abs, Relu, Sigmoid, Tanh, Sign, Square, Reciprocal };
enum class Compare { Eq, Ne, Lt, Le, Gt, Ge };

// out = a (op) b with broadcasting; a and b must share dtype and device.
Tensor binary(Binary op, const Tensor& a, const Tensor& b);
// out = a (op) scalar, with the scalar taking a's dtype.
Tensor binary_scalar(Binary op, const Tensor& a, double s);
// out = scalar (op) a  (for 2 - x, 1 / x, 2 ** x).
Tensor scalar_binary(Binary op, double s, const Tensor& a);
Tensor unary(Unary op, const Tensor& a);
Tensor compare(Compare op, const Tensor& a, const Tensor& b);  // bool result
Tensor compare_scalar(Compare op, const Tensor& a, double s);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);  // cond is bool
// dst (op)= src in place (src broadcasts to dst); bumps dst's version.
void binary_(Binary op, const Tensor& dst, const Tensor& src);
void binary_scalar_(Binary op, const Tensor& dst, double s);
// dst += alpha * src, the workhorse of optimizers and gradient accumulation.
void axpy_(const Tensor& dst, double alpha, const Tensor& src);

// Backward helpers for elementwise ops, fused so backward makes one pass, not three.
enum class Activation { Relu, Sigmoid, Tanh };
Tensor activation_backward(Activation act, const Tensor& grad, const Tensor& out);
Tensor relu_backward(const Tensor& grad, const Tensor& out);        // out <= 0 ? 0 : grad (NaN passes)
Tensor sigmoid_backward(const Tensor& grad, const Tensor& out);     // grad * out * (1 - out)
Tensor tanh_backward(const Tensor& grad, const Tensor& out);        // grad * (1 - out^2)

// Activations whose gradient is computed from the input x (the ones above use the
// output), some with parameters: gelu (exact, erf-based), gelu with the tanh
// approximation, silu, leaky_relu and softplus. Their backward reads x because the
// output does not give the gradient back: gelu and silu are not monotonic, so an output
// does not even tell which x produced it, and softplus would need log(expm1(out)).
// The math and the PyTorch semantics are in elementwise_math.h.
enum class InputActivation { Gelu, GeluTanh, Silu, LeakyRelu, Softplus };
// The parameters of those activations. Each op reads only its own fields; the defaults
// are PyTorch's.
struct ActivationParams {
  double negative_slope = 0.01;  // leaky_relu: the slope for x <= 0
  double beta = 1.0;             // softplus: log(1 + exp(beta x)) / beta
  double threshold = 20.0;       // softplus: x itself where beta x > threshold
};
// out = f(x) elementwise, out has x's shape; x floating.
Tensor input_activation(InputActivation act, const Tensor& x, const ActivationParams& p = {});
// gin = grad * f'(x); grad and x have one shape, dtype and device.
Tensor input_activation_backward(InputActivation act, const Tensor& grad, const Tensor& x,
                                 const ActivationParams& p = {});

// ---- reductions -------------------------------------------------------------------
enum class Reduce { Sum, Mean, Max, Min };
// Reduces over `dims` (all dims when empty).
Tensor reduce(Reduce op, const Tensor& a, const Shape& dims, bool keepdim);
// Index (int64) of the max or min along `dim`; ties go to the first.
Tensor argreduce(bool is_max, const Tensor& a, int64_t dim, bool keepdim);
// Sums `a` down to `shape`, undoing a broadcast: used by the backward of every
// broadcasting op. `shape` must broadcast to a's shape.
Tensor sum_to(const Tensor& a, const Shape& shape);

// ---- scans and selection along one dim (cpu/scan.cpp) --------------------------------
// out[..., j, ...] = a[..., 0, ...] + ... + a[..., j, ...] along dim (from the end when
// reverse: the backward of cumsum). Floats add in double; bool and int64 give int64, as
// in PyTorch.
Tensor cumsum(const Tensor& a, int64_t dim, bool reverse = false);
// The k largest (or smallest) entries along dim -> {values (a's dtype), indices (int64)},
// both a's shape with size k at dim, ordered best first. NaN counts as larger than
// everything (PyTorch's rule); ties go to the lower index first.
std::pair<Tensor, Tensor> topk(const Tensor& a, int64_t k, int64_t dim, bool largest = true);

// ---- linear algebra ---------------------------------------------------------------
// a (..., n, k) @ b (..., k, m) -> (..., n, m) with broadcast batch dims; 1-D operands
// are treated as a row (a) or column (b) vector and the extra dim is dropped.
Tensor matmul(const Tensor& a, const Tensor& b);
// c += a @ b for 2-D a (n, k), b (k, m) and a contiguous c (n, m): on the CPU one GEMM
// with beta = 1, so a weight gradient summed over microbatches needs no second pass.
void addmm_(const Tensor& c, const Tensor& a, const Tensor& b);

// x (N, in) @ w (out, in)^T + bias (out) -> (N, out): a Linear layer's forward in one
// GEMM, the bias preloaded into the output so no second pass is needed.
// w_t, when given, is a contiguous copy of w's transpose, (in, out), holding the same
// values: on the CPU the GEMM then reads it row by row (an "NN" product), which BLAS
// libraries run up to 3x faster than x @ w^T when x has few rows (bench/gemm --model
// deep-mlp). nn::Linear keeps such a copy (nn/linear.h). Other devices ignore it.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& w_t = Tensor());

// ---- layer normalisation (CPU, fused: tensor/cpu/layer_norm.cpp) ---------------------
// Over the last n elements of each row of a contiguous float/double CPU tensor; w and b
// (n elements) may be undefined. mean and rstd (one per row) are what backward needs.
struct LayerNormOut {
  Tensor y, mean, rstd;
};
LayerNormOut layer_norm(const Tensor& x, int64_t n, const Tensor& w, const Tensor& b, double eps);
struct LayerNormGrads {
  Tensor dx, dw, db;  // undefined where not asked for
};
LayerNormGrads layer_norm_backward(const Tensor& gy, const Tensor& x, int64_t n, const Tensor& w, const Tensor& mean,
                                   const Tensor& rstd, bool want_x, bool want_w, bool want_b);

// ---- softmax family ---------------------------------------------------------------
Tensor softmax(const Tensor& a, int64_t dim);
Tensor log_softmax(const Tensor& a, int64_t dim);
Tensor softmax_backward(const Tensor& grad, const Tensor& out, int64_t dim);
Tensor log_softmax_backward(const Tensor& grad, const Tensor& out, int64_t dim);

// Fused cross-entropy for logits (N, C) and int64 targets (N), mean over the batch.
// With label smoothing e the target distribution is (1-e) one-hot + e/C uniform.
// Returns {loss (0-d), probs (N, C) = softmax(logits)}; probs feed the backward.
std::pair<Tensor, Tensor> cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing);
// dLoss/dlogits = grad * (probs - q) / N
Tensor cross_entropy_backward(const Tensor& grad, const Tensor& probs, const Tensor& target, double label_smoothing);

// ---- indexing ---------------------------------------------------------------------
// out[i][j] = a[index[i][j]][j] (dim 0), etc.; index is int64 with a's number of dims.
Tensor gather(const Tensor& a, int64_t dim, const Tensor& index);
// zeros(shape) then out[index[i][j]][j] += src[i][j] (dim 0): gather's adjoint.
Tensor scatter_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src);
// Picks entries index[k] along dim; index is 1-D int64.
Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index);
// zeros(shape) then out.select(dim, index[k]) += src.select(dim, k): index_select's adjoint.
Tensor index_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src);

// ---- convolution and pooling --------------------------------------------------------
using weft::Conv2dParams;
using weft::Pool2dParams;
// x (N,C,H,W), w (K,C/groups,kh,kw), bias (K) or undefined -> (N,K,Ho,Wo)
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p);
Tensor conv2d_backward_input(const Tensor& grad, const Tensor& w, const Shape& x_shape, const Conv2dParams& p);
// With bias_grad, also sets *bias_grad = grad summed over N, Ho, Wo (K), in the same pass
// over grad where the kernel allows (the im2col path on the CPU).
Tensor conv2d_backward_weight(const Tensor& grad, const Tensor& x, const Shape& w_shape, const Conv2dParams& p,
                              Tensor* bias_grad = nullptr);

// x (N,C,H,W) -> {out (N,C,Ho,Wo), argmax (N,C,Ho,Wo) int64 flat index into H*W}
Tensor max_pool2d(const Tensor& x, const Pool2dParams& p);
Tensor max_pool2d_indices(const Tensor& x, const Pool2dParams& p);  // int64 flat h*W+w per window
Tensor max_pool2d_backward(const Tensor& grad, const Tensor& x, const Pool2dParams& p);
// max_pool2d(relu(x)) in one pass, and its backward (x: the input before relu)
Tensor relu_max_pool2d(const Tensor& x, const Pool2dParams& p);
Tensor relu_max_pool2d_backward(const Tensor& grad, const Tensor& x, const Pool2dParams& p);
Tensor avg_pool2d(const Tensor& x, const Pool2dParams& p);
Tensor avg_pool2d_backward(const Tensor& grad, const Shape& x_shape, const Pool2dParams& p);

// ---- random -------------------------------------------------------------------------
void uniform_(const Tensor& dst, double lo, double hi, Generator& gen);
void normal_(const Tensor& dst, double mean, double std, Generator& gen);
void bernoulli_(const Tensor& dst, double p, Generator& gen);  // 1 with probability p

// ---- fused optimizer updates (cpu/optim.cpp; the per-element math in optim_math.h) ----
// One call updates every parameter in `params` from the matching gradient, in place, all
// of them on one device. On a GPU that is one launch for all of them ("multi-tensor
// apply"): per-parameter launches would cost more than the math on small models. On the
// CPU each parameter is one fused pass (read grad, update state, write the weight), so an
// update touches memory once. Lists match one to one (same shape, dtype and device, all
// contiguous); bumps the version of every parameter and state buffer.
struct SgdHyper {
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
  bool first = false;  // the momentum buffers hold nothing yet: buf = d (PyTorch's rule)
  // A GPU kernel reads lr from here, a 1-element float32 tensor on the parameters' device,
  // so that a CUDA graph replaying the step follows a schedule (made from lr if undefined).
  Tensor lr_device;
};
// bufs: one momentum buffer per parameter, or empty when momentum is 0.
void sgd_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& bufs,
               const SgdHyper& h);

struct AdamHyper {
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  bool decoupled = false;  // AdamW
  int64_t step = 1;        // 1-based: the bias corrections use it
  // The GPU kernel reads lr and the step from these 1-element float32 tensors (see
  // SgdHyper); step_device must already hold `step`. Made from lr and step if undefined.
  Tensor lr_device, step_device;
};
void adam_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& exp_avg,
                const std::vector<Tensor>& exp_avg_sq, const AdamHyper& h);

// ---- device checks shared by ops ----------------------------------------------------
// Throws naming `op` when a and b are on different devices or have different dtypes.
void check_same(const char* op, const Tensor& a, const Tensor& b);
void check_cpu(const char* op, const Tensor& a);
// Throws naming `op` when dst has elements that share memory (a size > 1 with stride 0:
// an expanded view), where an in-place write would land on one element several times.
// PyTorch refuses the same ("unsupported operation: more than one element of the
// written-to tensor refers to a single memory location").
void check_writable(const char* op, const Tensor& dst);

}  // namespace weft::raw
