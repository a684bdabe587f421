// The CUDA backend: tensor/backend.h's interface, implemented by forwarding each call to
// the kernels (kernels.h, kernels/*.cu) and the library-backed ops (ops.h: cuBLAS,
// cuSPARSE, cuDNN). tensor/ finds it through cuda::builtin_backend() at the bottom.
#include "../tensor/backend.h"

#include "cuda.h"
#include "kernels.h"
#include "ops.h"

namespace weft::cuda {

namespace {

class CudaBackend final : public DeviceBackend {
 public:
  std::string name() const override { return "CUDA"; }

  void* allocate(size_t nbytes, int index) override { return device_malloc(nbytes, index); }
  void deallocate(void* p, int index) override { device_free(p, index); }
  void copy_bytes(void* dst, Device dd, const void* src, Device sd, size_t n) override {
    cuda::memcpy(dst, dd, src, sd, n);
  }

  void binary(raw::Binary op, const Tensor& out, const Tensor& a, const Tensor& b) override {
    cuda::binary(op, out, a, b);
  }
  void binary_scalar(raw::Binary op, const Tensor& out, const Tensor& a, double s, bool scalar_first) override {
    cuda::binary_scalar(op, out, a, s, scalar_first);
  }
  void unary(raw::Unary op, const Tensor& out, const Tensor& a) override { cuda::unary(op, out, a); }
  void compare(raw::Compare op, const Tensor& out, const Tensor& a, const Tensor& b) override {
    cuda::compare(op, out, a, b);
  }
  void compare_scalar(raw::Compare op, const Tensor& out, const Tensor& a, double s) override {
    cuda::compare_scalar(op, out, a, s);
  }
  void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) override {
    cuda::where(out, cond, a, b);
  }
  void axpy(const Tensor& dst, double alpha, const Tensor& src) override { cuda::axpy(dst, alpha, src); }
  void activation_backward(raw::Activation act, const Tensor& gin, const Tensor& grad, const Tensor& out) override {
    cuda::activation_backward(act, gin, grad, out);
  }
  void input_activation(raw::InputActivation act, const raw::ActivationParams& p, const Tensor& out,
                        const Tensor& x) override {
    cuda::input_activation(act, p, out, x);
  }
  void input_activation_backward(raw::InputActivation act, const raw::ActivationParams& p, const Tensor& gin,
                                 const Tensor& grad, const Tensor& x) override {
    cuda::input_activation_backward(act, p, gin, grad, x);
  }

  void copy(const Tensor& dst, const Tensor& src) override { cuda::copy(dst, src); }
  void fill(const Tensor& dst, double value) override { cuda::fill(dst, value); }

  void reduce(raw::Reduce op, const Tensor& out, const Tensor& a, const Shape& dims) override {
    cuda::reduce(op, out, a, dims);
  }
  void argreduce(bool is_max, const Tensor& out, const Tensor& a, int64_t dim) override {
    cuda::argreduce(is_max, out, a, dim);
  }

  void cumsum(const Tensor& out, const Tensor& a, int64_t outer, int64_t n, int64_t inner, bool reverse) override {
    cuda::cumsum(out, a, outer, n, inner, reverse);
  }
  void topk(const Tensor& values, const Tensor& indices, const Tensor& a, int64_t outer, int64_t n, int64_t inner,
            int64_t k, bool largest) override {
    cuda::topk(values, indices, a, outer, n, inner, k, largest);
  }

  void softmax(const Tensor& out, const Tensor& a, int64_t dim, bool log) override { cuda::softmax(out, a, dim, log); }
  void softmax_backward(const Tensor& gin, const Tensor& grad, const Tensor& out, int64_t dim, bool log) override {
    cuda::softmax_backward(gin, grad, out, dim, log);
  }
  void cross_entropy(const Tensor& loss, const Tensor& probs, const Tensor& logits, const Tensor& target,
                     double label_smoothing) override {
    cuda::cross_entropy(loss, probs, logits, target, label_smoothing);
  }
  void cross_entropy_backward(const Tensor& glogits, const Tensor& grad, const Tensor& probs, const Tensor& target,
                              double label_smoothing) override {
    cuda::cross_entropy_backward(glogits, grad, probs, target, label_smoothing);
  }

  void gather(const Tensor& out, const Tensor& a, int64_t dim, const Tensor& index) override {
    cuda::gather(out, a, dim, index);
  }
  void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override {
    cuda::scatter_add(out, dim, index, src);
  }
  void index_select(const Tensor& out, const Tensor& a, int64_t dim, const Tensor& index) override {
    cuda::index_select(out, a, dim, index);
  }
  void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override {
    cuda::index_add(out, dim, index, src);
  }

  void uniform(const Tensor& dst, double lo, double hi, uint64_t seed, uint64_t offset) override {
    cuda::uniform(dst, lo, hi, seed, offset);
  }
  void normal(const Tensor& dst, double mean, double std, uint64_t seed, uint64_t offset) override {
    cuda::normal(dst, mean, std, seed, offset);
  }
  void bernoulli(const Tensor& dst, double p, uint64_t seed, uint64_t offset) override {
    cuda::bernoulli(dst, p, seed, offset);
  }

  bool gemm_16bit() const override { return true; }         // cublasGemmEx on tensor cores (cuda/blas.cpp)
  bool conv_16bit() const override { return use_cudnn(); }  // cuDNN (cuda/conv.cpp); not the im2col fallback
  void gemm(const Tensor& out, const Tensor& a, const Tensor& b) override { cuda::gemm(out, a, b); }
  void linear(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias) override {
    cuda::linear(out, x, w, bias);
  }
  void csr_linear(const Tensor& y, const Tensor& x, const Tensor& row_ptr, const Tensor& col, const Tensor& values,
                  const Tensor& bias) override {
    cuda::csr_linear(y, x, row_ptr, col, values, bias);
  }

  void conv2d(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p) override {
    cuda::conv2d(out, x, w, bias, p);
  }
  void conv2d_backward_input(const Tensor& gx, const Tensor& grad, const Tensor& w, const Conv2dParams& p) override {
    cuda::conv2d_backward_input(gx, grad, w, p);
  }
  void conv2d_backward_weight(const Tensor& gw, const Tensor& grad, const Tensor& x, const Conv2dParams& p) override {
    cuda::conv2d_backward_weight(gw, grad, x, p);
  }
  void max_pool2d(const Tensor& out, const Tensor& x, const Pool2dParams& p) override { cuda::max_pool2d(out, x, p); }
  void max_pool2d_indices(const Tensor& out, const Tensor& x, const Pool2dParams& p) override {
    cuda::max_pool2d_indices(out, x, p);
  }
  void max_pool2d_backward(const Tensor& gx, const Tensor& grad, const Tensor& x, const Pool2dParams& p) override {
    cuda::max_pool2d_backward(gx, grad, x, p);
  }
  void avg_pool2d(const Tensor& out, const Tensor& x, const Pool2dParams& p) override { cuda::avg_pool2d(out, x, p); }
  void avg_pool2d_backward(const Tensor& gx, const Tensor& grad, const Pool2dParams& p) override {
    cuda::avg_pool2d_backward(gx, grad, p);
  }

  void sgd_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& bufs,
                const raw::SgdHyper& h) override {
    cuda::sgd_step(params, grads, bufs, h);
  }
  void adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                 const std::vector<Tensor>& exp_avg, const std::vector<Tensor>& exp_avg_sq,
                 const raw::AdamHyper& h) override {
    cuda::adam_step(params, grads, exp_avg, exp_avg_sq, h);
  }
};

}  // namespace

// Never destroyed: tensors freed during static destruction still find their backend.
DeviceBackend* builtin_backend() {
  static CudaBackend* const b = new CudaBackend;
  return b;
}

}  // namespace weft::cuda
