#include "conv.h"

#include <cmath>

#include "init.h"

namespace weft::nn {

namespace {
Shape weight_shape(int64_t in, int64_t out, const Conv2dOptions& o) {
  WEFT_CHECK(in > 0 && out > 0 && o.groups > 0 && in % o.groups == 0 && out % o.groups == 0, "Conv2d: channels ", in,
             " -> ", out, " must be positive and divisible by groups ", o.groups);
  WEFT_CHECK(o.kernel_size[0] > 0 && o.kernel_size[1] > 0, "Conv2d: kernel size must be positive");
  return {out, in / o.groups, o.kernel_size[0], o.kernel_size[1]};
}
}  // namespace

Conv2d::Conv2d(int64_t in, int64_t out, const Conv2dOptions& opt)
    : weight(register_parameter("weight", empty(weight_shape(in, out, opt)))),
      bias(register_parameter("bias", opt.bias ? empty({out}) : Tensor())),
      in_channels(in),
      out_channels(out),
      options(opt) {
  reset_parameters();
}

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t padding)
    : Conv2d(in, out, Conv2dOptions{.kernel_size = {k, k}, .stride = {stride, stride}, .padding = {padding, padding}}) {}

void Conv2d::reset_parameters(Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(init::fans(weight).first));
  init::uniform_(weight, -bound, bound, gen);
  if (bias.defined()) init::uniform_(bias, -bound, bound, gen);
}

Tensor Conv2d::forward(const Tensor& x) {
  return weft::conv2d(x, weight, bias, {.stride = options.stride, .padding = options.padding,
                                  .dilation = options.dilation, .groups = options.groups});
}

std::string Conv2d::repr() const {
  const auto& o = options;
  return detail::str("Conv2d(", in_channels, ", ", out_channels, ", kernel_size=(", o.kernel_size[0], ",",
                     o.kernel_size[1], "), stride=(", o.stride[0], ",", o.stride[1], "), padding=(", o.padding[0],
                     ",", o.padding[1], ")", o.dilation[0] > 1 || o.dilation[1] > 1 ? ", dilated" : "",
                     o.groups > 1 ? detail::str(", groups=", o.groups) : "", o.bias ? "" : ", bias=false", ")");
}

}  // namespace weft::nn
