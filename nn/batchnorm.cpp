#include "batchnorm.h"

#include "../autograd/functions.h"
#include "../autograd/tape.h"
#include "../tensor/raw.h"

namespace weft::nn {

BatchNorm2d::BatchNorm2d(int64_t c, double eps, double momentum, bool affine)
    : weight(register_parameter("weight", affine ? ones({c}) : Tensor())),
      bias(register_parameter("bias", affine ? zeros({c}) : Tensor())),
      running_mean(register_buffer("running_mean", zeros({c}))),
      running_var(register_buffer("running_var", ones({c}))),
      num_batches_tracked(register_buffer("num_batches_tracked", zeros({}, {.dtype = kInt64}))),
      num_features(c),
      eps(eps),
      momentum(momentum) {
  WEFT_CHECK(c > 0, "BatchNorm2d: num_features must be positive, got ", c);
}

namespace {

// The state and settings a BatchNorm layer hands to the shared forward.
struct BatchNormState {
  const Tensor& weight;
  const Tensor& bias;
  Tensor& running_mean;
  Tensor& running_var;
  Tensor& num_batches_tracked;
  int64_t channels;
  double eps, momentum;
  bool training;
};

// x normalised per channel (dim 1) over `over` (every other dim); `per_channel` is the
// shape that broadcasts a (C) vector against x: (1, C, 1, ...).
Tensor batch_norm(const Tensor& x, BatchNormState st, const Shape& over, const Shape& per_channel, const char* who) {
  Tensor mean, var;
  if (st.training) {
    const int64_t n = x.numel() / st.channels;
    WEFT_CHECK(n > 1, who, ": training needs more than one value per channel, got input ", x.shape());
    mean = x.mean(over, true);
    var = (x - mean).pow(2.0).mean(over, true);
    if (!is_recomputing()) {  // a recomputed forward already updated them the first time
      autograd::NoGradGuard no_grad;
      Tensor unbiased = raw::binary_scalar(raw::Binary::Mul, var.detach().reshape({st.channels}), double(n) / (n - 1));
      st.running_mean.mul_(1 - st.momentum).add_(mean.detach().reshape({st.channels}), st.momentum);
      st.running_var.mul_(1 - st.momentum).add_(unbiased, st.momentum);
      st.num_batches_tracked.add_(1.0);
    }
  } else {
    mean = st.running_mean.reshape(per_channel);
    var = st.running_var.reshape(per_channel);
  }
  Tensor y = (x - mean) / (var + st.eps).sqrt();
  if (st.weight.defined()) y = y * st.weight.reshape(per_channel) + st.bias.reshape(per_channel);
  return y;
}

}  // namespace

Tensor BatchNorm2d::forward(const Tensor& x) {
  WEFT_CHECK(x.dim() == 4 && x.shape()[1] == num_features, "BatchNorm2d(", num_features, "): input ", x.shape(),
             " must be (N, ", num_features, ", H, W)");
  return batch_norm(x, {weight, bias, running_mean, running_var, num_batches_tracked, num_features, eps, momentum,
                        is_training()},
                    {0, 2, 3}, {1, num_features, 1, 1}, "BatchNorm2d");
}

BatchNorm1d::BatchNorm1d(int64_t c, double eps, double momentum, bool affine)
    : weight(register_parameter("weight", affine ? ones({c}) : Tensor())),
      bias(register_parameter("bias", affine ? zeros({c}) : Tensor())),
      running_mean(register_buffer("running_mean", zeros({c}))),
      running_var(register_buffer("running_var", ones({c}))),
      num_batches_tracked(register_buffer("num_batches_tracked", zeros({}, {.dtype = kInt64}))),
      num_features(c),
      eps(eps),
      momentum(momentum) {
  WEFT_CHECK(c > 0, "BatchNorm1d: num_features must be positive, got ", c);
}

Tensor BatchNorm1d::forward(const Tensor& x) {
  WEFT_CHECK((x.dim() == 2 || x.dim() == 3) && x.shape()[1] == num_features, "BatchNorm1d(", num_features,
             "): input ", x.shape(), " must be (N, ", num_features, ") or (N, ", num_features, ", L)");
  const BatchNormState st{weight, bias, running_mean, running_var, num_batches_tracked, num_features, eps, momentum,
                          is_training()};
  if (x.dim() == 2) return batch_norm(x, st, {0}, {1, num_features}, "BatchNorm1d");
  return batch_norm(x, st, {0, 2}, {1, num_features, 1}, "BatchNorm1d");
}

std::string BatchNorm1d::repr() const {
  return detail::str("BatchNorm1d(", num_features, ", eps=", eps, ", momentum=", momentum, ")");
}

std::string BatchNorm2d::repr() const {
  return detail::str("BatchNorm2d(", num_features, ", eps=", eps, ", momentum=", momentum, ")");
}

}  // namespace weft::nn
