#include "sgd.h"

#include "../tensor/thread_pool.h"

namespace weft::optim {

SGD::SGD(std::vector<Tensor> params, const SGDOptions& opt) : Optimizer(std::move(params), opt.lr), options(opt) {
  WEFT_CHECK(opt.momentum >= 0 && opt.weight_decay >= 0, "SGD: momentum and weight_decay must be >= 0");
  WEFT_CHECK(!opt.nesterov || (opt.momentum > 0 && opt.dampening == 0),
             "SGD: Nesterov momentum needs momentum > 0 and dampening 0");
}

void SGD::update(size_t i, Tensor& p, const Tensor& grad, int64_t t) {
  const SGDOptions& o = options;
  (void)t;
  const bool first = !has_state(i, "momentum_buffer");  // PyTorch: buf = g on first use
  Tensor buf = o.momentum > 0 ? state(i, "momentum_buffer") : Tensor();
  dispatch_floating(p.dtype(), "SGD", [&]<class T>() {
    T* __restrict w = p.data<T>();
    const T* __restrict g = grad.data<T>();
    T* __restrict b = buf.defined() ? buf.data<T>() : nullptr;
    const T rate = T(lr()), wd = T(o.weight_decay), mom = T(o.momentum), damp = T(1 - o.dampening);
    parallel_for(0, p.numel(), 1 << 16, [&](int64_t s, int64_t e) {
      for (int64_t k = s; k < e; ++k) {
        T d = g[k] + wd * w[k];
        if (b) {
          b[k] = first ? d : mom * b[k] + damp * d;
          d = o.nesterov ? d + mom * b[k] : b[k];
        }
        w[k] -= rate * d;
      }
    });
  });
}

}  // namespace weft::optim
