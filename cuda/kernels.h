// The CUDA twins of the raw ops in tensor/raw.h: what the CUDA backend (backend.cpp,
// implementing tensor/backend.h) forwards to. Internal to cuda/.
//
// The raw ops (tensor/cpu/*.cpp) check shapes, dtypes and devices, allocate the output
// on the input's device, and -- when that device is a GPU -- call the backend instead of
// their CPU loop. So these functions trust their arguments: shapes already
// broadcast-checked, `out` allocated (contiguous) with the right shape and dtype, every
// tensor on the same GPU. Inputs may have any strides (views, transposes, broadcasts
// with stride 0). Kernels run on the current stream and never synchronise with the host,
// so they can be captured in CUDA graphs.
//
// Plain C++ header; compiled only in a build with CUDA.
#pragma once

#include <cstdint>

#include "../tensor/raw.h"

namespace weft::cuda {

// ---- elementwise (kernels/elementwise.cu) ----------------------------------------------
// out = a (op) b; out may be `a` itself (in-place ops pass dst as both).
void binary(raw::Binary op, const Tensor& out, const Tensor& a, const Tensor& b);
// out = a (op) s, or s (op) a when scalar_first.
void binary_scalar(raw::Binary op, const Tensor& out, const Tensor& a, double s, bool scalar_first);
void unary(raw::Unary op, const Tensor& out, const Tensor& a);
void compare(raw::Compare op, const Tensor& out, const Tensor& a, const Tensor& b);  // out is bool
void compare_scalar(raw::Compare op, const Tensor& out, const Tensor& a, double s);
void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b);
// dst += alpha * src (src broadcasts to dst)
void axpy(const Tensor& dst, double alpha, const Tensor& src);
// gin = grad * f'(out) for relu / sigmoid / tanh
void activation_backward(raw::Activation act, const Tensor& gin, const Tensor& grad, const Tensor& out);
// out = f(x) and gin = grad * f'(x) for gelu / silu / leaky_relu / softplus
void input_activation(raw::InputActivation act, const raw::ActivationParams& p, const Tensor& out, const Tensor& x);
void input_activation_backward(raw::InputActivation act, const raw::ActivationParams& p, const Tensor& gin,
                               const Tensor& grad, const Tensor& x);

// ---- copies (kernels/copy.cu) ------------------------------------------------------------
// dst = src on one GPU: any strides, src broadcasts, dtype conversion.
void copy(const Tensor& dst, const Tensor& src);
void fill(const Tensor& dst, double value);

// ---- reductions (kernels/reduce.cu) -----------------------------------------------------
// out has a's shape with the dims in `dims` (sorted, unique, non-empty) set to 1.
void reduce(raw::Reduce op, const Tensor& out, const Tensor& a, const Shape& dims);
// out (int64) has a's shape with `dim` set to 1; ties go to the first index.
void argreduce(bool is_max, const Tensor& out, const Tensor& a, int64_t dim);

// ---- scans and selection (kernels/scan.cu) ---------------------------------------------
// a contiguous, viewed as (outer, n, inner); one thread per (outer, inner) line.
void cumsum(const Tensor& out, const Tensor& a, int64_t outer, int64_t n, int64_t inner, bool reverse);
void topk(const Tensor& values, const Tensor& indices, const Tensor& a, int64_t outer, int64_t n, int64_t inner,
          int64_t k, bool largest);

// ---- softmax and cross-entropy (kernels/softmax.cu) -------------------------------------
void softmax(const Tensor& out, const Tensor& a, int64_t dim, bool log);
// gin = dL/da given grad = dL/dout and out = (log_)softmax(a)
void softmax_backward(const Tensor& gin, const Tensor& grad, const Tensor& out, int64_t dim, bool log);
// logits (N, C), target (N) int64: loss (0-d) = mean over rows, probs (N, C) = softmax.
// A target outside [0, C) is not checked on the GPU (it would need a host sync): the
// raw op checks targets on the CPU side where cheap; the kernel clamps and never
// reads out of bounds.
void cross_entropy(const Tensor& loss, const Tensor& probs, const Tensor& logits, const Tensor& target,
                   double label_smoothing);
// glogits = grad * (probs - q) / N with q the (smoothed) one-hot target; grad is 0-d.
void cross_entropy_backward(const Tensor& glogits, const Tensor& grad, const Tensor& probs, const Tensor& target,
                            double label_smoothing);

// ---- indexing (kernels/index.cu) --------------------------------------------------------
void gather(const Tensor& out, const Tensor& a, int64_t dim, const Tensor& index);
// out is zeroed by the caller; atomically adds src into it.
void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);
void index_select(const Tensor& out, const Tensor& a, int64_t dim, const Tensor& index);
void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);

// ---- random (kernels/random.cu) ---------------------------------------------------------
// Counter-based Philox4x32-10, exactly as on the CPU (tensor/cpu/random.cpp): element i
// of dst in row-major order draws the words of counter (offset + i) under key = seed and
// goes through the same transform (tensor/random_math.h), so a seeded GPU tensor equals
// the CPU one and no number depends on the launch configuration. The caller reserved
// numel counters from its Generator; `offset` is the first.
void uniform(const Tensor& dst, double lo, double hi, uint64_t seed, uint64_t offset);
void normal(const Tensor& dst, double mean, double std, uint64_t seed, uint64_t offset);
void bernoulli(const Tensor& dst, double p, uint64_t seed, uint64_t offset);

}  // namespace weft::cuda
