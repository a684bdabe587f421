#include "adam.h"

#include <cmath>

#include "../cuda/ops.h"
#include "../tensor/raw.h"
#include "../tensor/thread_pool.h"

namespace weft::optim {

Adam::Adam(std::vector<Tensor> params, const AdamOptions& opt, bool decoupled_wd)
    : Optimizer(std::move(params), opt.lr), options(opt), decoupled(decoupled_wd) {
  WEFT_CHECK(opt.beta1 >= 0 && opt.beta1 < 1 && opt.beta2 >= 0 && opt.beta2 < 1, "Adam: betas must be in [0, 1), got ",
             opt.beta1, ", ", opt.beta2);
  WEFT_CHECK(opt.eps >= 0 && opt.weight_decay >= 0, "Adam: eps and weight_decay must be >= 0");
}

namespace {
// One fused pass over n elements. A plain function with restrict pointers: the compiler
// sees that the four arrays never overlap and vectorises the loop (through a lambda's
// captured references it did not, and the update cost a fifth of a training step).
template <class T>
void adam_kernel(T* __restrict w, const T* __restrict g, T* __restrict m, T* __restrict v, int64_t n, T b1, T b2,
                 T eps, T step, T inv_sqrt_bc2, T decay, T l2) {
  for (int64_t k = 0; k < n; ++k) {
    const T d = g[k] + l2 * w[k];
    m[k] = b1 * m[k] + (1 - b1) * d;
    v[k] = b2 * v[k] + (1 - b2) * d * d;
    w[k] = w[k] * decay - step * m[k] / (std::sqrt(v[k]) * inv_sqrt_bc2 + eps);
  }
}
}  // namespace

void Adam::update(size_t i, Tensor& p, const Tensor& grad, int64_t t) {
  const AdamOptions& o = options;
  Tensor m = state(i, "exp_avg"), v = state(i, "exp_avg_sq");
  dispatch_floating(p.dtype(), "Adam", [&]<class T>() {
    T* w = p.data<T>();
    const T* g = grad.data<T>();
    T *mp = m.data<T>(), *vp = v.data<T>();
    const T b1 = T(o.beta1), b2 = T(o.beta2), eps = T(o.eps);
    const double bc1 = 1 - std::pow(o.beta1, double(t)), bc2 = 1 - std::pow(o.beta2, double(t));
    const T step = T(lr() / bc1), inv_sqrt_bc2 = T(1 / std::sqrt(bc2));
    const T decay = decoupled ? T(1 - lr() * o.weight_decay) : T(1), l2 = decoupled ? T(0) : T(o.weight_decay);
    parallel_for(0, p.numel(), 1 << 16, [&](int64_t s, int64_t e) {
      adam_kernel<T>(w + s, g + s, mp + s, vp + s, e - s, b1, b2, eps, step, inv_sqrt_bc2, decay, l2);
    }, 4);
  });
}

// All CUDA parameters in one fused launch (cuda/kernels/optim.cu). The step count lives
// on the GPU and is incremented there, so a CUDA graph replaying this update keeps the
// bias correction moving; it is reset from the host count only when they disagree (a
// checkpoint was loaded).
void Adam::update_cuda(const std::vector<size_t>& idx, int64_t t) {
  const AdamOptions& o = options;
  std::vector<Tensor> ps, gs, ms, vs;
  for (size_t i : idx) {
    ps.push_back(params()[i]);
    gs.push_back(raw::contiguous(params()[i].grad()));
    ms.push_back(state(i, "exp_avg"));
    vs.push_back(state(i, "exp_avg_sq"));
  }
  const Device dev = ps[0].device();
  if (!step_device_.defined() || step_device_.device() != dev) {
    step_device_ = full({1}, double(t - 1), {.dtype = kFloat32, .device = dev});
  } else if (step_device_value_ != t - 1) {
    raw::fill_(step_device_, double(t - 1));
  }
  raw::binary_scalar_(raw::Binary::Add, step_device_, 1.0);
  step_device_value_ = t;
  cuda::adam_step(ps, gs, ms, vs, lr_on(dev), step_device_,
                  {float(o.beta1), float(o.beta2), float(o.eps), float(o.weight_decay), decoupled});
}

}  // namespace weft::optim
