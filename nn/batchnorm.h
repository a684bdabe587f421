// BatchNorm2d: normalises each channel of x (N, C, H, W) over (N, H, W).
// BatchNorm1d: the same for x (N, C) over N, or x (N, C, L) over (N, L).
//
// Training uses the batch's mean and (biased) variance and updates the running stats:
// running = (1 - momentum) * running + momentum * batch, with the unbiased variance,
// as PyTorch does. eval() uses the running stats instead.
#pragma once

#include "module.h"

namespace weft::nn {

// What BatchNorm1d and BatchNorm2d share: the parameters, the running statistics and
// the forward over the given dims.
class BatchNorm : public Module {
 public:
  Tensor& weight;  // gamma (C), ones at start; undefined without affine
  Tensor& bias;    // beta (C), zeros at start
  Tensor& running_mean;
  Tensor& running_var;
  Tensor& num_batches_tracked;  // int64 scalar, as in PyTorch's state dict
  const int64_t num_features;
  const double eps, momentum;

 protected:
  BatchNorm(const char* name, int64_t num_features, double eps, double momentum, bool affine);
  // x normalised per channel (dim 1) over `over`; `per_channel` broadcasts a (C) vector
  // against x: (1, C, 1, ...).
  Tensor normalize(const Tensor& x, const Shape& over, const Shape& per_channel);
  std::string describe() const;  // "BatchNorm2d(64, eps=1e-05, momentum=0.1)"

 private:
  const char* name_;
};

class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5, double momentum = 0.1, bool affine = true)
      : BatchNorm("BatchNorm2d", num_features, eps, momentum, affine) {}
  Tensor forward(const Tensor& x) override;
  std::string repr() const override { return describe(); }

  std::shared_ptr<Module> make_fresh() const override {
    return std::make_shared<BatchNorm2d>(num_features, eps, momentum, weight.defined());
  }
};

class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t num_features, double eps = 1e-5, double momentum = 0.1, bool affine = true)
      : BatchNorm("BatchNorm1d", num_features, eps, momentum, affine) {}
  Tensor forward(const Tensor& x) override;
  std::string repr() const override { return describe(); }

  std::shared_ptr<Module> make_fresh() const override {
    return std::make_shared<BatchNorm1d>(num_features, eps, momentum, weight.defined());
  }
};

}  // namespace weft::nn
