// DeviceBackend: the seam between tensor/'s raw ops and a device other than the CPU.
//
// A raw op (tensor/cpu/*.cpp) checks shapes, dtypes and devices, allocates its output on
// the input's device, and then either runs its CPU loop or, for a tensor on another kind
// of device, calls the same-named function of that device's backend:
//
//     Tensor out = empty(shape, a.dtype(), a.device());
//     if (!a.device().is_cpu()) backend(a.device()).binary(op, out, a, b);
//     else /* the CPU loop */
//
// tensor/ knows only this interface. The CUDA backend (cuda/backend.cpp) implements it,
// and cuda::builtin_backend() below hands it over: declared here, defined in cuda/ --
// as nullptr by cuda/disabled.cpp in a build without CUDA, where the first op on a GPU
// tensor then fails with "weft was built without CUDA". No header of cuda/ is included
// here, and since tensor/ refers to that function by name, linking the static library
// always brings the CUDA ops along (a self-registering static object could be dropped
// by the linker without a word).
//
// Memory and the name are all a backend must provide; every op has a default that throws
// naming the op and the backend, so a new backend can grow op by op.
//
// Backend functions trust their arguments: the raw op has checked them, `out` is
// allocated (contiguous) with the right shape and dtype, and every tensor is on the
// backend's device kind. Inputs may have any strides (views, transposes, broadcasts
// with stride 0). The comments here say what each computes; the CPU twin of each is
// the raw op of the same name in raw.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "raw.h"

namespace weft {

class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;
  virtual std::string name() const = 0;  // "CUDA"

  // ---- memory --------------------------------------------------------------------------
  virtual void* allocate(size_t nbytes, int index) = 0;
  virtual void deallocate(void* p, int index) = 0;
  // Copies nbytes of contiguous memory between the host and this backend's device, or
  // within it, in either direction; returns when dst may be read.
  virtual void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) = 0;

  // ---- element-wise (the math in elementwise_math.h) ---------------------------------------
  // out = a (op) b; out may be `a` itself (in-place ops pass dst as both).
  virtual void binary(raw::Binary op, const Tensor& out, const Tensor& a, const Tensor& b);
  // out = a (op) s, or s (op) a when scalar_first.
  virtual void binary_scalar(raw::Binary op, const Tensor& out, const Tensor& a, double s, bool scalar_first);
  virtual void unary(raw::Unary op, const Tensor& out, const Tensor& a);
  virtual void compare(raw::Compare op, const Tensor& out, const Tensor& a, const Tensor& b);  // out is bool
  virtual void compare_scalar(raw::Compare op, const Tensor& out, const Tensor& a, double s);
  virtual void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b);
  virtual void axpy(const Tensor& dst, double alpha, const Tensor& src);  // dst += alpha * src
  // gin = grad * f'(out) for relu / sigmoid / tanh
  virtual void activation_backward(raw::Activation act, const Tensor& gin, const Tensor& grad, const Tensor& out);
  // out = f(x) and gin = grad * f'(x) for gelu / silu / leaky_relu / softplus (x floating)
  virtual void input_activation(raw::InputActivation act, const raw::ActivationParams& p, const Tensor& out,
                                const Tensor& x);
  virtual void input_activation_backward(raw::InputActivation act, const raw::ActivationParams& p, const Tensor& gin,
                                         const Tensor& grad, const Tensor& x);

  // ---- copies ------------------------------------------------------------------------------
  // dst = src on one device: any strides, src broadcasts, dtype conversion.
  virtual void copy(const Tensor& dst, const Tensor& src);
  virtual void fill(const Tensor& dst, double value);

  // ---- reductions --------------------------------------------------------------------------
  // out has a's shape with the dims in `dims` (sorted, unique, non-empty) set to 1.
  virtual void reduce(raw::Reduce op, const Tensor& out, const Tensor& a, const Shape& dims);
  // out (int64) has a's shape with `dim` set to 1; ties go to the first index.
  virtual void argreduce(bool is_max, const Tensor& out, const Tensor& a, int64_t dim);

  // ---- scans and selection (a is contiguous; outer, n, inner: a viewed as (outer, n, inner)
  // with n the scanned dim) ----------------------------------------------------------------
  // out (a's shape and layout) = running sum along n, from the end when reverse.
  virtual void cumsum(const Tensor& out, const Tensor& a, int64_t outer, int64_t n, int64_t inner, bool reverse);
  // values, indices (outer, k, inner): the best k along n, best first (raw::topk's order).
  virtual void topk(const Tensor& values, const Tensor& indices, const Tensor& a, int64_t outer, int64_t n,
                    int64_t inner, int64_t k, bool largest);

  // ---- softmax and cross-entropy -------------------------------------------------------------
  virtual void softmax(const Tensor& out, const Tensor& a, int64_t dim, bool log);
  virtual void softmax_backward(const Tensor& gin, const Tensor& grad, const Tensor& out, int64_t dim, bool log);
  // logits (N, C), target (N) int64: loss (0-d) = mean over rows, probs (N, C) = softmax.
  virtual void cross_entropy(const Tensor& loss, const Tensor& probs, const Tensor& logits, const Tensor& target,
                             double label_smoothing);
  // glogits = grad * (probs - q) / N with q the (smoothed) one-hot target; grad is 0-d.
  virtual void cross_entropy_backward(const Tensor& glogits, const Tensor& grad, const Tensor& probs,
                                      const Tensor& target, double label_smoothing);

  // ---- indexing ----------------------------------------------------------------------------
  virtual void gather(const Tensor& out, const Tensor& a, int64_t dim, const Tensor& index);
  virtual void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);  // out zeroed
  virtual void index_select(const Tensor& out, const Tensor& a, int64_t dim, const Tensor& index);
  virtual void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);  // out zeroed

  // ---- random (the math in random_math.h) --------------------------------------------------
  // Element i of dst (row-major) draws Philox counter offset + i under key seed, exactly
  // as the CPU does, so a seeded tensor is the same on every device.
  virtual void uniform(const Tensor& dst, double lo, double hi, uint64_t seed, uint64_t offset);
  virtual void normal(const Tensor& dst, double mean, double std, uint64_t seed, uint64_t offset);
  virtual void bernoulli(const Tensor& dst, double p, uint64_t seed, uint64_t offset);

  // ---- matrix products -----------------------------------------------------------------------
  // Whether gemm and linear take bfloat16 / float16 tensors themselves (products summed
  // in float32, one rounding: GPU tensor cores). Otherwise half_backend.h computes them
  // through float32 tensors.
  virtual bool gemm_16bit() const { return false; }
  // out (n, m), contiguous = a (n, k) @ b (k, m); a and b 2-D with any strides.
  virtual void gemm(const Tensor& out, const Tensor& a, const Tensor& b);
  // out (n, out_f) = x (n, in) @ w (out_f, in)^T + bias (out_f) (bias may be undefined).
  virtual void linear(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias);
  // y (B, out) = x (B, in), contiguous @ W^T + bias, W (out, in) in CSR: row_ptr (out + 1),
  // col (nnz) int64, values (nnz) float32 (prune::SparseLinear).
  virtual void csr_linear(const Tensor& y, const Tensor& x, const Tensor& row_ptr, const Tensor& col,
                          const Tensor& values, const Tensor& bias);

  // ---- convolution and pooling -------------------------------------------------------------
  // Whether the three conv2d functions take bfloat16 / float16 tensors themselves (float32
  // accumulation: cuDNN on tensor cores). Otherwise half_backend.h goes through float32.
  virtual bool conv_16bit() const { return false; }
  virtual void conv2d(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p);
  virtual void conv2d_backward_input(const Tensor& gx, const Tensor& grad, const Tensor& w, const Conv2dParams& p);
  virtual void conv2d_backward_weight(const Tensor& gw, const Tensor& grad, const Tensor& x, const Conv2dParams& p);
  virtual void max_pool2d(const Tensor& out, const Tensor& x, const Pool2dParams& p);
  virtual void max_pool2d_indices(const Tensor& out, const Tensor& x, const Pool2dParams& p);
  virtual void max_pool2d_backward(const Tensor& gx, const Tensor& grad, const Tensor& x, const Pool2dParams& p);
  virtual void avg_pool2d(const Tensor& out, const Tensor& x, const Pool2dParams& p);
  virtual void avg_pool2d_backward(const Tensor& gx, const Tensor& grad, const Pool2dParams& p);

  // ---- fused optimizer updates (the math in optim_math.h) --------------------------------------
  // Every parameter in one launch; h.lr_device (and h.step_device) are defined and on
  // the parameters' device (raw::sgd_step_ / adam_step_ make sure of it).
  virtual void sgd_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                        const std::vector<Tensor>& bufs, const raw::SgdHyper& h);
  virtual void adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                         const std::vector<Tensor>& exp_avg, const std::vector<Tensor>& exp_avg_sq,
                         const raw::AdamHyper& h);

 protected:
  // What an op the backend does not implement does: throw "<op>: the <name> backend does
  // not implement it". A new backend can start with memory, copies and a few ops.
  [[noreturn]] void unsupported(const char* op) const;
};

namespace cuda {
// The CUDA backend, a never-destroyed object; nullptr in a build without CUDA.
DeviceBackend* builtin_backend();
}  // namespace cuda

// Puts `b` in place of the built-in backend of device kind `kind` (a test's fake, or a
// device of your own) and returns the replacement it undoes, if any; nullptr goes back
// to the built-in. A backend must outlive every tensor allocated through it.
DeviceBackend* register_backend(DeviceKind kind, DeviceBackend* b);
// The backend of device d (not the CPU): the registered one, else the built-in; throws
// naming the device when there is none: "weft was built without CUDA (no backend for cuda:0)".
DeviceBackend& backend(Device d);

// Whether a raw op leaves its CPU loops for a backend: t lives on another device, or t is
// a 16-bit float, which every device computes through float32 (half_backend.h).
bool routed(const Tensor& t);
// The backend a routed op calls: half_backend() for a 16-bit float, else backend(device).
DeviceBackend& backend_for(const Tensor& t);

}  // namespace weft
