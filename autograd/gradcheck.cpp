#include "gradcheck.h"

#include <cmath>

#include "../tensor/raw.h"
#include "tape.h"

namespace weft::autograd {

namespace {

// Element `i` (row-major) of a tensor of any strides, as a typed pointer.
template <class T>
T* element(const Tensor& t, int64_t i) {
  int64_t off = 0;
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    off += (i % t.shape()[d]) * t.strides()[d];
    i /= t.shape()[d];
  }
  return static_cast<T*>(t.storage()->data()) + t.offset() + off;
}

Tensor run(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs) {
  NoGradGuard no_grad;
  return raw::to_dtype(raw::contiguous(f(inputs)), kFloat64);
}

}  // namespace

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& opt) {
  GradcheckResult result;
  const int64_t n_out = run(f, inputs).numel();
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    WEFT_CHECK(x.is_leaf(), "gradcheck: input ", k, " must be a leaf tensor");
    // Analytic: row o of the Jacobian is the gradient of output element o.
    std::vector<std::vector<double>> analytic(n_out);
    for (int64_t o = 0; o < n_out; ++o) {
      for (const Tensor& in : inputs)
        if (in.defined() && in.requires_grad() && in.impl()->autograd) in.impl()->autograd->grad = Tensor();
      Tensor y = f(inputs);
      if (!y.requires_grad()) {
        analytic[o].assign(x.numel(), 0.0);
        continue;
      }
      Tensor seed = zeros(y.shape(), {.dtype = y.dtype(), .device = y.device()});
      raw::fill_(seed.detach().reshape({-1}).narrow(0, o, 1), 1.0);
      backward(y, seed);
      Tensor g = x.grad();
      analytic[o] = g.defined() ? g.to_vector<double>() : std::vector<double>(x.numel(), 0.0);
    }
    // Numeric: column i of the Jacobian from central differences on element i of x.
    for (int64_t i = 0; i < x.numel(); ++i) {
      std::vector<double> plus, minus;
      if (x.device().is_cuda()) {  // GPU memory: perturb element i through a one-element view
        WEFT_CHECK(x.is_contiguous(), "gradcheck: GPU input ", k, " must be contiguous");
        const Tensor xi = x.detach().reshape({-1}).narrow(0, i, 1);
        const double orig = xi.item<double>();
        raw::fill_(xi, orig + opt.eps);
        plus = run(f, inputs).to_vector<double>();
        raw::fill_(xi, orig - opt.eps);
        minus = run(f, inputs).to_vector<double>();
        raw::fill_(xi, orig);
      } else dispatch_floating(x.dtype(), "gradcheck", [&]<class T>() {
        T* p = element<T>(x, i);
        const T orig = *p;
        *p = static_cast<T>(orig + opt.eps);
        plus = run(f, inputs).to_vector<double>();
        *p = static_cast<T>(orig - opt.eps);
        minus = run(f, inputs).to_vector<double>();
        *p = orig;
      });
      for (int64_t o = 0; o < n_out; ++o) {
        const double num = (plus[o] - minus[o]) / (2 * opt.eps), ana = analytic[o][i];
        if (!(std::abs(num - ana) <= opt.atol + opt.rtol * std::abs(num))) {
          result.ok = false;
          result.report = detail::str("gradcheck: input ", k, " ", x.shape(), " element ", i, ", output element ", o,
                                      ": analytic ", ana, " vs numeric ", num);
          return result;
        }
      }
    }
  }
  for (const Tensor& in : inputs)
    if (in.defined() && in.requires_grad() && in.impl()->autograd) in.impl()->autograd->grad = Tensor();
  return result;
}

}  // namespace weft::autograd
