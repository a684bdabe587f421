#include "linear.h"

#include <cmath>

#include "../autograd/functions.h"
#include "init.h"

namespace weft::nn {

Linear::Linear(int64_t in, int64_t out, bool with_bias)
    // (sizes clamped to 0 so that the check below, not empty(), reports a bad one)
    : weight(register_parameter("weight", empty({out >= 0 ? out : 0, in >= 0 ? in : 0}))),
      bias(register_parameter("bias", with_bias ? empty({out >= 0 ? out : 0}) : Tensor())),
      in_features(in),
      out_features(out) {
  WEFT_CHECK(in > 0 && out > 0, "Linear: features must be positive, got in=", in, " out=", out);
  reset_parameters();
}

void Linear::reset_parameters(Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  init::uniform_(weight, -bound, bound, gen);
  if (bias.defined()) init::uniform_(bias, -bound, bound, gen);
}

Tensor Linear::forward(const Tensor& x) {
  WEFT_CHECK(x.dim() >= 1 && x.size(-1) == in_features, "Linear(", in_features, ", ", out_features, "): input ",
             x.shape(), " must end in ", in_features, " features");
  return linear(x, weight, bias);
}

std::string Linear::repr() const {
  return detail::str("Linear(in_features=", in_features, ", out_features=", out_features,
                     ", bias=", bias.defined() ? "true" : "false", ")");
}

}  // namespace weft::nn
