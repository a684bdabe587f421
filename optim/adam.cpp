#include "adam.h"

#include <cmath>

#include "../tensor/thread_pool.h"

namespace weft::optim {

Adam::Adam(std::vector<Tensor> params, const AdamOptions& opt, bool decoupled_wd)
    : Optimizer(std::move(params), opt.lr), options(opt), decoupled(decoupled_wd) {
  WEFT_CHECK(opt.beta1 >= 0 && opt.beta1 < 1 && opt.beta2 >= 0 && opt.beta2 < 1, "Adam: betas must be in [0, 1), got ",
             opt.beta1, ", ", opt.beta2);
  WEFT_CHECK(opt.eps >= 0 && opt.weight_decay >= 0, "Adam: eps and weight_decay must be >= 0");
}

void Adam::update(size_t i, Tensor& p, const Tensor& grad, int64_t t) {
  const AdamOptions& o = options;
  Tensor m = state(i, "exp_avg"), v = state(i, "exp_avg_sq");
  dispatch_floating(p.dtype(), "Adam", [&]<class T>() {
    // restrict: the four arrays never overlap, which lets the compiler vectorise.
    T* __restrict w = p.data<T>();
    const T* __restrict g = grad.data<T>();
    T* __restrict mp = m.data<T>();
    T* __restrict vp = v.data<T>();
    const T b1 = T(o.beta1), b2 = T(o.beta2), eps = T(o.eps);
    const T bc1 = T(1 - std::pow(o.beta1, double(t))), bc2 = T(1 - std::pow(o.beta2, double(t)));
    const T step = T(lr()) / bc1, inv_sqrt_bc2 = T(1 / std::sqrt(double(bc2)));
    const T decay = decoupled ? T(1 - lr() * o.weight_decay) : T(1), l2 = decoupled ? T(0) : T(o.weight_decay);
    parallel_for(0, p.numel(), 1 << 16, [&](int64_t s, int64_t e) {
      for (int64_t k = s; k < e; ++k) {
        const T d = g[k] + l2 * w[k];
        mp[k] = b1 * mp[k] + (1 - b1) * d;
        vp[k] = b2 * vp[k] + (1 - b2) * d * d;
        w[k] = w[k] * decay - step * mp[k] / (std::sqrt(vp[k]) * inv_sqrt_bc2 + eps);
      }
    });
  });
}

}  // namespace weft::optim
