// gradcheck: compares the tape's gradients with finite differences.
//
// For f: inputs -> output, the analytic Jacobian comes from one backward per output
// element (with a one-hot output gradient); the numeric one from central differences
// (f(x + eps) - f(x - eps)) / 2eps, one input element at a time. They must agree within
// atol + rtol * |numeric| everywhere. Use float64 inputs: float32 rounding swamps eps.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "../tensor/tensor.h"

namespace weft::autograd {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
};

struct GradcheckResult {
  bool ok = true;
  std::string report;  // the first mismatch: input, element, analytic vs numeric
  explicit operator bool() const { return ok; }
};

// `inputs` are leaves; those with requires_grad are checked. To test an op on
// non-contiguous inputs, make the view (a transpose, a slice) inside f.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& opt = {});

}  // namespace weft::autograd
