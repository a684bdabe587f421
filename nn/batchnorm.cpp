#include "batchnorm.h"

#include "../autograd/autocast.h"
#include "../autograd/functions.h"
#include "../autograd/tape.h"
#include "../tensor/raw.h"

namespace weft::nn {

BatchNorm::BatchNorm(const char* name, int64_t c, double eps, double momentum, bool affine)
    : weight(register_parameter("weight", affine ? ones({c}) : Tensor())),
      bias(register_parameter("bias", affine ? zeros({c}) : Tensor())),
      running_mean(register_buffer("running_mean", zeros({c}))),
      running_var(register_buffer("running_var", ones({c}))),
      num_batches_tracked(register_buffer("num_batches_tracked", zeros({}, {.dtype = kInt64}))),
      num_features(c),
      eps(eps),
      momentum(momentum),
      name_(name) {
  WEFT_CHECK(c > 0, name, ": num_features must be positive, got ", c);
}

// On autocast's float32 list: batch statistics of 16-bit values, and running statistics
// updated with them, would lose too much.
Tensor BatchNorm::normalize(const Tensor& x_in, const Shape& over, const Shape& per_channel) {
  const Tensor x = autocast::to_float32(x_in);
  Tensor mean, var;
  if (is_training()) {
    const int64_t n = x.numel() / num_features;
    WEFT_CHECK(n > 1, name_, ": training needs more than one value per channel, got input ", x.shape());
    mean = x.mean(over, true);
    var = (x - mean).pow(2.0).mean(over, true);
    if (!is_recomputing()) {  // a recomputed forward already updated them the first time
      autograd::NoGradGuard no_grad;
      Tensor unbiased = raw::binary_scalar(raw::Binary::Mul, var.detach().reshape({num_features}), double(n) / (n - 1));
      running_mean.mul_(1 - momentum).add_(mean.detach().reshape({num_features}), momentum);
      running_var.mul_(1 - momentum).add_(unbiased, momentum);
      num_batches_tracked.add_(1.0);
    }
  } else {
    mean = running_mean.reshape(per_channel);
    var = running_var.reshape(per_channel);
  }
  Tensor y = (x - mean) / (var + eps).sqrt();
  if (weight.defined()) y = y * weight.reshape(per_channel) + bias.reshape(per_channel);
  return y;
}

std::string BatchNorm::describe() const {
  return detail::str(name_, "(", num_features, ", eps=", eps, ", momentum=", momentum, ")");
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  WEFT_CHECK(x.dim() == 4 && x.shape()[1] == num_features, "BatchNorm2d(", num_features, "): input ", x.shape(),
             " must be (N, ", num_features, ", H, W)");
  return normalize(x, {0, 2, 3}, {1, num_features, 1, 1});
}

Tensor BatchNorm1d::forward(const Tensor& x) {
  WEFT_CHECK((x.dim() == 2 || x.dim() == 3) && x.shape()[1] == num_features, "BatchNorm1d(", num_features,
             "): input ", x.shape(), " must be (N, ", num_features, ") or (N, ", num_features, ", L)");
  if (x.dim() == 2) return normalize(x, {0}, {1, num_features});
  return normalize(x, {0, 2}, {1, num_features, 1});
}

}  // namespace weft::nn
