// Parameter-free layers: activations, pooling, flattening, dropout.
#pragma once

#include "../autograd/functions.h"
#include "module.h"

namespace weft::nn {

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x.relu(); }
  std::string repr() const override { return "ReLU()"; }

  std::shared_ptr<Module> make_fresh() const override { return std::make_shared<ReLU>(); }
};

class Tanh : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x.tanh(); }
  std::string repr() const override { return "Tanh()"; }

  std::shared_ptr<Module> make_fresh() const override { return std::make_shared<Tanh>(); }
};

class Sigmoid : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x.sigmoid(); }
  std::string repr() const override { return "Sigmoid()"; }

  std::shared_ptr<Module> make_fresh() const override { return std::make_shared<Sigmoid>(); }
};

// The activations below read their input in backward (raw::InputActivation) and follow
// PyTorch's formulas and defaults; each keeps x's shape.

// x Phi(x) with approximate "none" (exact, through erf), or PyTorch's tanh
// approximation with "tanh"; another string throws here.
class GELU : public Module {
 public:
  explicit GELU(std::string approximate = "none");
  Tensor forward(const Tensor& x) override { return x.gelu(approximate); }
  std::string repr() const override { return "GELU(approximate='" + approximate + "')"; }
  const std::string approximate;

  std::shared_ptr<Module> make_fresh() const override { return std::make_shared<GELU>(approximate); }
};

// x sigmoid(x), also known as swish
class SiLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x.silu(); }
  std::string repr() const override { return "SiLU()"; }

  std::shared_ptr<Module> make_fresh() const override { return std::make_shared<SiLU>(); }
};

// x > 0 ? x : negative_slope * x
class LeakyReLU : public Module {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : negative_slope(negative_slope) {}
  Tensor forward(const Tensor& x) override { return x.leaky_relu(negative_slope); }
  std::string repr() const override;
  const double negative_slope;

  std::shared_ptr<Module> make_fresh() const override { return std::make_shared<LeakyReLU>(negative_slope); }
};

// log(1 + exp(beta x)) / beta, and x itself where beta x > threshold
class Softplus : public Module {
 public:
  explicit Softplus(double beta = 1.0, double threshold = 20.0) : beta(beta), threshold(threshold) {}
  Tensor forward(const Tensor& x) override { return x.softplus(beta, threshold); }
  std::string repr() const override;
  const double beta, threshold;

  std::shared_ptr<Module> make_fresh() const override { return std::make_shared<Softplus>(beta, threshold); }
};

// x (N, C, H, W) -> (N, C, Ho, Wo)
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int64_t kernel, int64_t stride = 0, int64_t padding = 0);
  explicit MaxPool2d(const Pool2dParams& p) : params(p) {}
  Tensor forward(const Tensor& x) override { return weft::max_pool2d(x, params); }
  std::string repr() const override;
  const Pool2dParams params;

  std::shared_ptr<Module> make_fresh() const override { return std::make_shared<MaxPool2d>(params); }
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(int64_t kernel, int64_t stride = 0, int64_t padding = 0);
  explicit AvgPool2d(const Pool2dParams& p) : params(p) {}
  Tensor forward(const Tensor& x) override { return weft::avg_pool2d(x, params); }
  std::string repr() const override;
  const Pool2dParams params;

  std::shared_ptr<Module> make_fresh() const override { return std::make_shared<AvgPool2d>(params); }
};

// x (N, C, H, W) -> (N, C, oh, ow) whatever H and W: output cell (i, j) averages rows
// [floor(i H / oh), ceil((i + 1) H / oh)) and the columns likewise (PyTorch's bins, which
// overlap when oh does not divide H). (1, 1) is global average pooling. When the sizes
// divide it is one AvgPool2d; otherwise one mean per cell, each differentiable.
class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(int64_t size) : AdaptiveAvgPool2d(size, size) {}
  AdaptiveAvgPool2d(int64_t out_h, int64_t out_w);
  Tensor forward(const Tensor& x) override;
  std::string repr() const override;
  const int64_t out_h, out_w;

  std::shared_ptr<Module> make_fresh() const override { return std::make_shared<AdaptiveAvgPool2d>(out_h, out_w); }
};

// Flattens dims [start_dim, end_dim] into one: (N, C, H, W) -> (N, C*H*W) by default.
class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1) : start_dim(start_dim), end_dim(end_dim) {}
  Tensor forward(const Tensor& x) override { return x.flatten(start_dim, end_dim); }
  std::string repr() const override { return "Flatten()"; }
  const int64_t start_dim, end_dim;

  std::shared_ptr<Module> make_fresh() const override { return std::make_shared<Flatten>(start_dim, end_dim); }
};

// Zeroes elements with probability p in training; the identity in eval().
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override { return weft::dropout(x, p, is_training(), gen_); }
  std::string repr() const override;
  const double p;

  std::shared_ptr<Module> make_fresh() const override { return std::make_shared<Dropout>(p, gen_); }

 private:
  Generator& gen_;
};

// Dropout of whole channels: x (N, C, *) has each (n, c) channel zeroed with probability
// p and the rest scaled by 1 / (1 - p), in training; the identity in eval(). Neighbouring
// pixels of a feature map are correlated, so dropping single ones regularises little.
class Dropout2d : public Module {
 public:
  explicit Dropout2d(double p = 0.5, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  std::string repr() const override;
  const double p;

  std::shared_ptr<Module> make_fresh() const override { return std::make_shared<Dropout2d>(p, gen_); }

 private:
  Generator& gen_;
};

}  // namespace weft::nn
