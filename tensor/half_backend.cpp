#include "half_backend.h"

#include "creation.h"
#include "views.h"

namespace weft {

namespace {

// t widened to float32 when it is a 16-bit float; anything else (float32, indices,
// masks, an undefined bias) as it is.
Tensor wide(const Tensor& t) { return t.defined() && is_half(t.dtype()) ? raw::to_dtype(t, kFloat32) : t; }

std::vector<Tensor> wide(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  out.reserve(ts.size());
  for (const Tensor& t : ts) out.push_back(wide(t));
  return out;
}

// The result, rounded into the output the raw op allocated (of the output's shape).
void store(const Tensor& out, const Tensor& result) { raw::copy_(out, views::reshape(result, out.shape())); }

void store(const std::vector<Tensor>& outs, const std::vector<Tensor>& results) {
  for (size_t i = 0; i < outs.size(); ++i)
    if (!outs[i].is_same(results[i])) store(outs[i], results[i]);
}

// The backend of out's device when it multiplies (native_gemm) or convolves
// (native_conv) 16-bit tensors itself; else nullptr.
DeviceBackend* native_gemm(const Tensor& out) {
  if (out.device().is_cpu()) return nullptr;
  DeviceBackend& b = backend(out.device());
  return b.gemm_16bit() ? &b : nullptr;
}
DeviceBackend* native_conv(const Tensor& out) {
  if (out.device().is_cpu()) return nullptr;
  DeviceBackend& b = backend(out.device());
  return b.conv_16bit() ? &b : nullptr;
}

class HalfBackend final : public DeviceBackend {
 public:
  std::string name() const override { return "16-bit float (through float32)"; }

  // Memory stays with the device's own backend (Storage asks backend(device)); these
  // are never called.
  void* allocate(size_t, int) override { unsupported("allocate"); }
  void deallocate(void*, int) override { unsupported("deallocate"); }
  void copy_bytes(void*, Device, const void*, Device, size_t) override { unsupported("copy_bytes"); }

  void binary(raw::Binary op, const Tensor& out, const Tensor& a, const Tensor& b) override {
    store(out, raw::binary(op, wide(a), wide(b)));
  }
  void binary_scalar(raw::Binary op, const Tensor& out, const Tensor& a, double s, bool scalar_first) override {
    store(out, scalar_first ? raw::scalar_binary(op, s, wide(a)) : raw::binary_scalar(op, wide(a), s));
  }
  void unary(raw::Unary op, const Tensor& out, const Tensor& a) override { store(out, raw::unary(op, wide(a))); }
  void compare(raw::Compare op, const Tensor& out, const Tensor& a, const Tensor& b) override {
    store(out, raw::compare(op, wide(a), wide(b)));
  }
  // The scalar in a's type first, as PyTorch compares (bf16(0.1) == 0.1 holds).
  void compare_scalar(raw::Compare op, const Tensor& out, const Tensor& a, double s) override {
    const double rounded = a.dtype() == kBFloat16 ? double(float(bfloat16(s))) : double(float(float16(s)));
    store(out, raw::compare_scalar(op, wide(a), rounded));
  }
  void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) override {
    store(out, raw::where(cond, wide(a), wide(b)));
  }
  void axpy(const Tensor& dst, double alpha, const Tensor& src) override {
    const Tensor d = wide(dst);  // dst is 16-bit (axpy_ routes on it): a fresh float32 copy
    raw::axpy_(d, alpha, wide(src));
    store(dst, d);
  }
  void activation_backward(raw::Activation act, const Tensor& gin, const Tensor& grad, const Tensor& out) override {
    store(gin, raw::activation_backward(act, wide(grad), wide(out)));
  }
  void input_activation(raw::InputActivation act, const raw::ActivationParams& p, const Tensor& out,
                        const Tensor& x) override {
    store(out, raw::input_activation(act, wide(x), p));
  }
  void input_activation_backward(raw::InputActivation act, const raw::ActivationParams& p, const Tensor& gin,
                                 const Tensor& grad, const Tensor& x) override {
    store(gin, raw::input_activation_backward(act, wide(grad), wide(x), p));
  }

  // copy_ and fill_ convert 16-bit values themselves (dispatch_storage), on every device
  // that has a 16-bit copy kernel; they never come here.
  void copy(const Tensor&, const Tensor&) override { unsupported("copy"); }
  void fill(const Tensor&, double) override { unsupported("fill"); }

  // Sums and means accumulate in float32 (a bfloat16 running sum stops growing at 256
  // when adding ones), and round once at the end.
  void reduce(raw::Reduce op, const Tensor& out, const Tensor& a, const Shape& dims) override {
    store(out, raw::reduce(op, wide(a), dims, /*keepdim=*/true));
  }
  void argreduce(bool is_max, const Tensor& out, const Tensor& a, int64_t dim) override {
    store(out, raw::argreduce(is_max, wide(a), dim, /*keepdim=*/true));
  }
  void cumsum(const Tensor& out, const Tensor& a, int64_t outer, int64_t n, int64_t inner, bool reverse) override {
    store(out, raw::cumsum(views::reshape(wide(a), {outer, n, inner}), 1, reverse));
  }
  void topk(const Tensor& values, const Tensor& indices, const Tensor& a, int64_t outer, int64_t n, int64_t inner,
            int64_t k, bool largest) override {
    auto [v, i] = raw::topk(views::reshape(wide(a), {outer, n, inner}), k, 1, largest);
    store(values, v);
    store(indices, i);
  }

  void softmax(const Tensor& out, const Tensor& a, int64_t dim, bool log) override {
    store(out, log ? raw::log_softmax(wide(a), dim) : raw::softmax(wide(a), dim));
  }
  void softmax_backward(const Tensor& gin, const Tensor& grad, const Tensor& out, int64_t dim, bool log) override {
    store(gin, log ? raw::log_softmax_backward(wide(grad), wide(out), dim)
                   : raw::softmax_backward(wide(grad), wide(out), dim));
  }
  void cross_entropy(const Tensor& loss, const Tensor& probs, const Tensor& logits, const Tensor& target,
                     double label_smoothing) override {
    auto [l, p] = raw::cross_entropy(wide(logits), target, label_smoothing);
    store(loss, l);
    store(probs, p);
  }
  void cross_entropy_backward(const Tensor& glogits, const Tensor& grad, const Tensor& probs, const Tensor& target,
                              double label_smoothing) override {
    store(glogits, raw::cross_entropy_backward(wide(grad), wide(probs), target, label_smoothing));
  }

  void gather(const Tensor& out, const Tensor& a, int64_t dim, const Tensor& index) override {
    store(out, raw::gather(wide(a), dim, index));
  }
  void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override {
    store(out, raw::scatter_add(out.shape(), dim, index, wide(src)));
  }
  void index_select(const Tensor& out, const Tensor& a, int64_t dim, const Tensor& index) override {
    store(out, raw::index_select(wide(a), dim, index));
  }
  void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override {
    store(out, raw::index_add(out.shape(), dim, index, wide(src)));
  }

  // Only a GPU's random ops come here (the CPU's draw straight into 16 bits): draw float32
  // on the device, round. The same counters, so the values are float32's, rounded.
  void uniform(const Tensor& dst, double lo, double hi, uint64_t seed, uint64_t offset) override {
    const Tensor t = empty(dst.shape(), kFloat32, dst.device());
    backend(dst.device()).uniform(t, lo, hi, seed, offset);
    store(dst, t);
  }
  void normal(const Tensor& dst, double mean, double std, uint64_t seed, uint64_t offset) override {
    const Tensor t = empty(dst.shape(), kFloat32, dst.device());
    backend(dst.device()).normal(t, mean, std, seed, offset);
    store(dst, t);
  }
  void bernoulli(const Tensor& dst, double p, uint64_t seed, uint64_t offset) override {
    const Tensor t = empty(dst.shape(), kFloat32, dst.device());
    backend(dst.device()).bernoulli(t, p, seed, offset);
    store(dst, t);
  }

  // Matrix products: 16-bit operands, float32 products and sums, one rounding -- by the
  // device itself where it can (tensor cores), else through float32 tensors.
  void gemm(const Tensor& out, const Tensor& a, const Tensor& b) override {
    if (DeviceBackend* native = native_gemm(out)) return native->gemm(out, a, b);
    store(out, raw::matmul(wide(a), wide(b)));
  }
  void linear(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias) override {
    if (DeviceBackend* native = native_gemm(out)) return native->linear(out, x, w, bias);
    store(out, raw::linear(wide(x), wide(w), wide(bias)));
  }

  void conv2d(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
              const Conv2dParams& p) override {
    if (DeviceBackend* native = native_conv(out)) return native->conv2d(out, x, w, bias, p);
    store(out, raw::conv2d(wide(x), wide(w), wide(bias), p));
  }
  void conv2d_backward_input(const Tensor& gx, const Tensor& grad, const Tensor& w, const Conv2dParams& p) override {
    if (DeviceBackend* native = native_conv(gx)) return native->conv2d_backward_input(gx, grad, w, p);
    store(gx, raw::conv2d_backward_input(wide(grad), wide(w), gx.shape(), p));
  }
  void conv2d_backward_weight(const Tensor& gw, const Tensor& grad, const Tensor& x, const Conv2dParams& p) override {
    if (DeviceBackend* native = native_conv(gw)) return native->conv2d_backward_weight(gw, grad, x, p);
    store(gw, raw::conv2d_backward_weight(wide(grad), wide(x), gw.shape(), p));
  }
  void max_pool2d(const Tensor& out, const Tensor& x, const Pool2dParams& p) override {
    store(out, raw::max_pool2d(wide(x), p));
  }
  void max_pool2d_indices(const Tensor& out, const Tensor& x, const Pool2dParams& p) override {
    store(out, raw::max_pool2d_indices(wide(x), p));
  }
  void max_pool2d_backward(const Tensor& gx, const Tensor& grad, const Tensor& x, const Pool2dParams& p) override {
    store(gx, raw::max_pool2d_backward(wide(grad), wide(x), p));
  }
  void avg_pool2d(const Tensor& out, const Tensor& x, const Pool2dParams& p) override {
    store(out, raw::avg_pool2d(wide(x), p));
  }
  void avg_pool2d_backward(const Tensor& gx, const Tensor& grad, const Pool2dParams& p) override {
    store(gx, raw::avg_pool2d_backward(wide(grad), gx.shape(), p));
  }

  // 16-bit parameters updated in float32 and rounded back (the optimizers keep float32
  // master copies instead, optim/optimizer.h; this is for a direct call).
  void sgd_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& bufs,
                const raw::SgdHyper& h) override {
    const std::vector<Tensor> p = wide(params), b = wide(bufs);
    raw::sgd_step_(p, wide(grads), b, h);
    store(params, p);
    store(bufs, b);
  }
  void adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                 const std::vector<Tensor>& exp_avg, const std::vector<Tensor>& exp_avg_sq,
                 const raw::AdamHyper& h) override {
    const std::vector<Tensor> p = wide(params), m = wide(exp_avg), v = wide(exp_avg_sq);
    raw::adam_step_(p, wide(grads), m, v, h);
    store(params, p);
    store(exp_avg, m);
    store(exp_avg_sq, v);
  }
};

}  // namespace

DeviceBackend& half_backend() {
  static auto* b = new HalfBackend();
  return *b;
}

}  // namespace weft
