// Conv2d: x (N, C, H, W) -> (N, K, Ho, Wo) with weight (K, C/groups, kh, kw), bias (K).
#pragma once

#include "../tensor/size2.h"
#include "../autograd/functions.h"
#include "module.h"

namespace weft::nn {

struct Conv2dOptions {
  Size2 kernel_size{3, 3};
  Size2 stride{1, 1};
  Size2 padding{0, 0};
  Size2 dilation{1, 1};
  int64_t groups = 1;
  bool bias = true;
};

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, const Conv2dOptions& opt = {});
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride = 1, int64_t padding = 0);
  Tensor forward(const Tensor& x) override;
  std::string repr() const override;
  void reset_parameters(Generator& gen = default_generator());

  Tensor& weight;
  Tensor& bias;
  const int64_t in_channels, out_channels;
  const Conv2dOptions options;

  std::shared_ptr<Module> make_fresh() const override {
    return std::make_shared<Conv2d>(in_channels, out_channels, options);
  }
};

}  // namespace weft::nn
