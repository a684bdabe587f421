// BatchNorm2d: normalises each channel of x (N, C, H, W) over (N, H, W).
// BatchNorm1d: the same for x (N, C) over N, or x (N, C, L) over (N, L).
//
// Training uses the batch's mean and (biased) variance and updates the running stats:
// running = (1 - momentum) * running + momentum * batch, with the unbiased variance,
// as PyTorch does. eval() uses the running stats instead.
#pragma once

#include "module.h"

namespace weft::nn {

class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5, double momentum = 0.1, bool affine = true);
  Tensor forward(const Tensor& x) override;
  std::string repr() const override;

  Tensor& weight;  // gamma (C), ones at start; undefined without affine
  Tensor& bias;    // beta (C), zeros at start
  Tensor& running_mean;
  Tensor& running_var;
  Tensor& num_batches_tracked;  // int64 scalar, as in PyTorch's state dict
  const int64_t num_features;
  const double eps, momentum;

  std::shared_ptr<Module> make_fresh() const override {
    return std::make_shared<BatchNorm2d>(num_features, eps, momentum, weight.defined());
  }
};

class BatchNorm1d : public Module {
 public:
  explicit BatchNorm1d(int64_t num_features, double eps = 1e-5, double momentum = 0.1, bool affine = true);
  Tensor forward(const Tensor& x) override;
  std::string repr() const override;

  Tensor& weight;  // gamma (C), ones at start; undefined without affine
  Tensor& bias;    // beta (C), zeros at start
  Tensor& running_mean;
  Tensor& running_var;
  Tensor& num_batches_tracked;
  const int64_t num_features;
  const double eps, momentum;

  std::shared_ptr<Module> make_fresh() const override {
    return std::make_shared<BatchNorm1d>(num_features, eps, momentum, weight.defined());
  }
};

}  // namespace weft::nn
