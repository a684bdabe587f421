#include "sgd.h"

#include "../cuda/ops.h"
#include "../tensor/raw.h"
#include "../tensor/thread_pool.h"

namespace weft::optim {

SGD::SGD(std::vector<Tensor> params, const SGDOptions& opt) : Optimizer(std::move(params), opt.lr), options(opt) {
  WEFT_CHECK(opt.momentum >= 0 && opt.weight_decay >= 0, "SGD: momentum and weight_decay must be >= 0");
  WEFT_CHECK(!opt.nesterov || (opt.momentum > 0 && opt.dampening == 0),
             "SGD: Nesterov momentum needs momentum > 0 and dampening 0");
}

namespace {
// One fused pass; restrict pointers let the compiler vectorise (see adam.cpp).
template <class T>
void sgd_kernel(T* __restrict w, const T* __restrict g, T* __restrict b, int64_t n, T rate, T wd, T mom, T damp,
                bool first, bool nesterov) {
  for (int64_t k = 0; k < n; ++k) {
    T d = g[k] + wd * w[k];
    if (b) {
      b[k] = first ? d : mom * b[k] + damp * d;
      d = nesterov ? d + mom * b[k] : b[k];
    }
    w[k] -= rate * d;
  }
}
}  // namespace

void SGD::update(size_t i, Tensor& p, const Tensor& grad, int64_t) {
  const SGDOptions& o = options;
  const bool first = !has_state(i, "momentum_buffer");  // PyTorch: buf = g on first use
  Tensor buf = o.momentum > 0 ? state(i, "momentum_buffer") : Tensor();
  dispatch_floating(p.dtype(), "SGD", [&]<class T>() {
    T* w = p.data<T>();
    const T* g = grad.data<T>();
    T* b = buf.defined() ? buf.data<T>() : nullptr;
    parallel_for(0, p.numel(), 1 << 16, [&](int64_t s, int64_t e) {
      sgd_kernel<T>(w + s, g + s, b ? b + s : nullptr, e - s, T(lr()), T(o.weight_decay), T(o.momentum),
                    T(1 - o.dampening), first, o.nesterov);
    }, 4);
  });
}

// All CUDA parameters in one fused launch (cuda/kernels/optim.cu).
void SGD::update_cuda(const std::vector<size_t>& idx, int64_t) {
  const SGDOptions& o = options;
  const bool first = o.momentum > 0 && !has_state(idx[0], "momentum_buffer");
  std::vector<Tensor> ps, gs, bufs;
  for (size_t i : idx) {
    ps.push_back(params()[i]);
    gs.push_back(raw::contiguous(params()[i].grad()));
    if (o.momentum > 0) bufs.push_back(state(i, "momentum_buffer"));
  }
  cuda::sgd_step(ps, gs, bufs, lr_on(ps[0].device()),
                 {float(o.momentum), float(o.dampening), float(o.weight_decay), o.nesterov, first});
}

}  // namespace weft::optim
