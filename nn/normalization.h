// Normalisation layers over features (not over the batch, as BatchNorm does):
//
//   LayerNorm(normalized_shape)   y = (x - mean) / sqrt(var + eps) * weight + bias, the
//                                 mean and (biased) variance over the last
//                                 normalized_shape.size() dims of each sample
//   RMSNorm(normalized_shape)     y = x / sqrt(mean(x^2) + eps) * weight: no centring,
//                                 no bias (Zhang & Sennrich 2019; LLaMA's norm)
//   GroupNorm(groups, channels)   x (N, C, *): the C channels in `groups` groups, each
//                                 normalised over its channels and all positions, then
//                                 a per-channel weight and bias
//
// PyTorch's definitions and defaults: eps 1e-5 (RMSNorm: unset means the dtype's
// machine epsilon, as torch.nn.RMSNorm), weight ones and bias zeros, elementwise_affine
// / affine on. Each is written with weft's differentiable ops (mean, mul, sqrt, ...), so
// autograd differentiates it and it runs on every device those ops run on; a fused
// kernel would be faster (one pass instead of four) and is a later step.
#pragma once

#include <optional>
#include <vector>

#include "module.h"

namespace weft::nn {

// The normalisation itself, without weight and bias: over the last `dims` dims of x.
Tensor layer_norm(const Tensor& x, int64_t dims, double eps);
Tensor rms_norm(const Tensor& x, int64_t dims, double eps);

class LayerNorm : public Module {
 public:
  explicit LayerNorm(std::vector<int64_t> normalized_shape, double eps = 1e-5, bool elementwise_affine = true);
  Tensor forward(const Tensor& x) override;
  std::string repr() const override;
  std::shared_ptr<Module> make_fresh() const override;

  Tensor& weight;  // normalized_shape, ones; undefined without elementwise_affine
  Tensor& bias;    // normalized_shape, zeros
  const std::vector<int64_t> normalized_shape;
  const double eps;
};

class RMSNorm : public Module {
 public:
  explicit RMSNorm(std::vector<int64_t> normalized_shape, std::optional<double> eps = std::nullopt,
                   bool elementwise_affine = true);
  Tensor forward(const Tensor& x) override;
  std::string repr() const override;
  std::shared_ptr<Module> make_fresh() const override;

  Tensor& weight;  // normalized_shape, ones; undefined without elementwise_affine
  const std::vector<int64_t> normalized_shape;
  const std::optional<double> eps;  // unset: the input dtype's machine epsilon
};

class GroupNorm : public Module {
 public:
  GroupNorm(int64_t num_groups, int64_t num_channels, double eps = 1e-5, bool affine = true);
  Tensor forward(const Tensor& x) override;
  std::string repr() const override;
  std::shared_ptr<Module> make_fresh() const override;

  Tensor& weight;  // (C), ones; undefined without affine
  Tensor& bias;    // (C), zeros
  const int64_t num_groups, num_channels;
  const double eps;
};

}  // namespace weft::nn
