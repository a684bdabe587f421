// The fused optimizer updates: raw::sgd_step_ and raw::adam_step_.
//
// The per-element formulas live in ../optim_math.h, shared with the CUDA kernel. Here
// each parameter is one pass over plain restrict pointers, split over the thread pool:
// the compiler then sees that weight, gradient and state never overlap and vectorises
// the loop (through a lambda's captured references it did not, and the update cost a
// fifth of a training step). On another device, one backend call updates every
// parameter.
#include "../backend.h"
#include "../optim_math.h"
#include "../raw.h"
#include "loops.h"

namespace weft::raw {

namespace {

using optim_math::AdamCoeffs;
using optim_math::SgdCoeffs;

// Chunks of at least 64k elements, 4 per thread (parallel_for's chunks_per_thread), so
// that threads finishing early pick up the rest.
constexpr int64_t kUpdateGrain = int64_t(1) << 16;
constexpr int kUpdateChunksPerThread = 4;

// `list` (named `what`) matches params one to one: same shape, dtype and device.
void check_list(const char* op, const char* what, const std::vector<Tensor>& list, const std::vector<Tensor>& params,
                bool must_be_contiguous) {
  WEFT_CHECK(list.size() == params.size(), op, ": ", params.size(), " parameters but ", list.size(), " ", what);
  for (size_t i = 0; i < list.size(); ++i) {
    const Tensor& t = list[i];
    WEFT_CHECK(t.defined(), op, ": ", what, " ", i, " is undefined");
    WEFT_CHECK(t.shape() == params[i].shape() && t.dtype() == params[i].dtype() && t.device() == params[i].device(), op,
               ": ", what, " ", i, " is ", t.dtype(), " ", t.shape(), " on ", t.device(), ", its parameter ",
               params[i].dtype(), " ", params[i].shape(), " on ", params[i].device());
    WEFT_CHECK(!must_be_contiguous || t.is_contiguous(), op, ": ", what, " ", i, " of shape ", t.shape(),
               " must be contiguous (it is updated in place)");
  }
}

void check_params(const char* op, const std::vector<Tensor>& params) {
  for (size_t i = 0; i < params.size(); ++i) {
    WEFT_CHECK(params[i].defined() && params[i].device() == params[0].device(), op, ": parameter ", i,
               " is undefined or on another device than parameter 0 (", params[0].device(), ")");
    WEFT_CHECK(params[i].dtype() == kFloat32 || params[i].dtype() == kFloat64, op, ": parameter ", i, " is ",
               params[i].dtype(), "; updates need float32 or float64");
    WEFT_CHECK(params[i].is_contiguous(), op, ": parameter ", i, " of shape ", params[i].shape(),
               " must be contiguous (it is updated in place)");
  }
}

std::vector<Tensor> contiguous_all(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  out.reserve(ts.size());
  for (const Tensor& t : ts) out.push_back(contiguous(t));
  return out;
}

// A 1-element float32 tensor on `d` holding v: what a GPU kernel reads when the caller
// kept no device copy of its own.
Tensor device_scalar(const Tensor& given, double v, Device d) {
  if (given.defined()) {
    WEFT_CHECK(given.numel() == 1 && given.dtype() == kFloat32 && given.device() == d,
               "optimizer step: a device scalar must be one float32 on ", d, ", got ", given.dtype(), " ",
               given.shape(), " on ", given.device());
    return given;
  }
  return full({1}, v, {.dtype = kFloat32, .device = d});
}

void bump_all(const std::vector<Tensor>& ts) {
  for (const Tensor& t : ts) t.storage()->bump_version();
}

// The element's values go through locals: passed by reference, the arrays' elements
// lose their restrict-ness inside optim_math's functions, and the compiler adds a
// run-time aliasing check in front of the vector loop.
template <class T>
void sgd_kernel(T* __restrict w, const T* __restrict g, T* __restrict b, int64_t n, const SgdCoeffs<T> c) {
  if (b) {
    for (int64_t k = 0; k < n; ++k) {
      T wk = w[k], bk = b[k];
      optim_math::sgd_update(wk, g[k], &bk, c);
      w[k] = wk, b[k] = bk;
    }
  } else {
    for (int64_t k = 0; k < n; ++k) {
      T wk = w[k];
      optim_math::sgd_update<T>(wk, g[k], nullptr, c);
      w[k] = wk;
    }
  }
}

template <class T>
void adam_kernel(T* __restrict w, const T* __restrict g, T* __restrict m, T* __restrict v, int64_t n,
                 const AdamCoeffs<T> c) {
  for (int64_t k = 0; k < n; ++k) {
    T wk = w[k], mk = m[k], vk = v[k];
    optim_math::adam_update(wk, g[k], mk, vk, c);
    w[k] = wk, m[k] = mk, v[k] = vk;
  }
}

}  // namespace

void sgd_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads_in, const std::vector<Tensor>& bufs,
               const SgdHyper& h) {
  if (params.empty()) return;
  check_params("SGD", params);
  check_list("SGD", "gradients", grads_in, params, false);
  if (!bufs.empty()) check_list("SGD", "momentum buffers", bufs, params, true);
  WEFT_CHECK(bufs.empty() || h.momentum > 0, "SGD: momentum buffers given but momentum is ", h.momentum);
  const std::vector<Tensor> grads = contiguous_all(grads_in);
  const Device dev = params[0].device();
  if (routed(params[0])) {
    SgdHyper hd = h;
    hd.lr_device = device_scalar(h.lr_device, h.lr, dev);
    backend_for(params[0]).sgd_step(params, grads, bufs, hd);
  } else {
    for (size_t i = 0; i < params.size(); ++i) {
      dispatch_floating(params[i].dtype(), "SGD", [&]<class T>() {
        T* w = params[i].data<T>();
        const T* g = grads[i].data<T>();
        T* b = bufs.empty() ? nullptr : bufs[i].data<T>();
        const SgdCoeffs<T> c{T(h.lr), T(h.weight_decay), T(h.momentum), T(1 - h.dampening), h.first, h.nesterov};
        parallel_for(
            0, params[i].numel(), kUpdateGrain,
            [&](int64_t s, int64_t e) { sgd_kernel<T>(w + s, g + s, b ? b + s : nullptr, e - s, c); }, kUpdateChunksPerThread);
      });
    }
  }
  bump_all(params);
  bump_all(bufs);
}

void adam_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads_in,
                const std::vector<Tensor>& exp_avg, const std::vector<Tensor>& exp_avg_sq, const AdamHyper& h) {
  if (params.empty()) return;
  check_params("Adam", params);
  check_list("Adam", "gradients", grads_in, params, false);
  check_list("Adam", "first moments", exp_avg, params, true);
  check_list("Adam", "second moments", exp_avg_sq, params, true);
  WEFT_CHECK(h.step >= 1, "Adam: the step number is 1-based, got ", h.step);
  const std::vector<Tensor> grads = contiguous_all(grads_in);
  const Device dev = params[0].device();
  if (routed(params[0])) {
    AdamHyper hd = h;
    hd.lr_device = device_scalar(h.lr_device, h.lr, dev);
    hd.step_device = device_scalar(h.step_device, double(h.step), dev);
    backend_for(params[0]).adam_step(params, grads, exp_avg, exp_avg_sq, hd);
  } else {
    for (size_t i = 0; i < params.size(); ++i) {
      dispatch_floating(params[i].dtype(), "Adam", [&]<class T>() {
        T* w = params[i].data<T>();
        const T* g = grads[i].data<T>();
        T *m = exp_avg[i].data<T>(), *v = exp_avg_sq[i].data<T>();
        const AdamCoeffs<T> c =
            optim_math::adam_coeffs<T>(h.lr, double(h.step), h.beta1, h.beta2, h.eps, h.weight_decay, h.decoupled);
        parallel_for(
            0, params[i].numel(), kUpdateGrain,
            [&](int64_t s, int64_t e) { adam_kernel<T>(w + s, g + s, m + s, v + s, e - s, c); }, kUpdateChunksPerThread);
      });
    }
  }
  bump_all(params);
  bump_all(exp_avg);
  bump_all(exp_avg_sq);
}

}  // namespace weft::raw
