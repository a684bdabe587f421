// Linear: y = x W^T + b, for x (..., in) and W (out, in), b (out).
#pragma once

#include "module.h"

namespace weft::nn {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  // x (..., in) -> (..., out)
  Tensor forward(const Tensor& x) override;
  std::string repr() const override;

  // PyTorch's default: U(-1/sqrt(in), 1/sqrt(in)) for the weight and the bias.
  void reset_parameters(Generator& gen = default_generator());

  Tensor& weight;
  Tensor& bias;  // undefined when built without bias
  const int64_t in_features, out_features;

  std::shared_ptr<Module> make_fresh() const override {
    return std::make_shared<Linear>(in_features, out_features, bias.defined());
  }
};

}  // namespace weft::nn
