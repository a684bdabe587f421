#include "normalization.h"

#include <limits>

#include "../autograd/autocast.h"
#include "../autograd/functions.h"
#include "../tensor/error.h"

namespace weft::nn {

namespace {

// The last `dims` dims of a rank-`rank` tensor: {rank - dims, ..., rank - 1}.
Shape last_dims(int64_t rank, int64_t dims) {
  std::vector<int64_t> d;
  for (int64_t k = rank - dims; k < rank; ++k) d.push_back(k);
  return Shape(d);
}

// x must end in `shape`: names the layer and both shapes otherwise.
void check_trailing(const char* layer, const Tensor& x, const std::vector<int64_t>& shape) {
  const int64_t k = int64_t(shape.size());
  bool ok = x.dim() >= k;
  for (int64_t i = 0; ok && i < k; ++i) ok = x.size(x.dim() - k + i) == shape[size_t(i)];
  WEFT_CHECK(ok, layer, "(", Shape(shape), "): input ", x.shape(), " must end in ", Shape(shape));
}

Tensor ones_param(const std::vector<int64_t>& shape) { return ones(Shape(shape), {.requires_grad = true}); }
Tensor zeros_param(const std::vector<int64_t>& shape) { return zeros(Shape(shape), {.requires_grad = true}); }

double machine_epsilon(DType dt) {
  return dt == kFloat64 ? std::numeric_limits<double>::epsilon() : std::numeric_limits<float>::epsilon();
}

}  // namespace

// layer_norm and rms_norm are on autocast's float32 list.
Tensor layer_norm(const Tensor& x_in, int64_t dims, double eps) {
  const Tensor x = autocast::to_float32(x_in);
  const Shape over = last_dims(x.dim(), dims);
  const Tensor centred = x - x.mean(over, /*keepdim=*/true);
  const Tensor var = (centred * centred).mean(over, true);  // biased, as PyTorch normalises
  return centred / (var + eps).sqrt();
}

Tensor rms_norm(const Tensor& x_in, int64_t dims, double eps) {
  const Tensor x = autocast::to_float32(x_in);
  const Shape over = last_dims(x.dim(), dims);
  return x / ((x * x).mean(over, true) + eps).sqrt();
}

// ---- LayerNorm ----------------------------------------------------------------------------

LayerNorm::LayerNorm(std::vector<int64_t> shape, double eps_, bool affine)
    : weight(register_parameter("weight", affine ? ones_param(shape) : Tensor())),
      bias(register_parameter("bias", affine ? zeros_param(shape) : Tensor())),
      normalized_shape(std::move(shape)),
      eps(eps_) {
  WEFT_CHECK(!normalized_shape.empty(), "LayerNorm: normalized_shape must name at least one dim");
  for (int64_t d : normalized_shape) WEFT_CHECK(d > 0, "LayerNorm: normalized_shape ", Shape(normalized_shape), " must be positive");
}

Tensor LayerNorm::forward(const Tensor& x_in) {
  const Tensor x = autocast::to_float32(x_in);  // autocast's float32 list: here, so the fused kernel runs
  check_trailing("LayerNorm", x, normalized_shape);
  // On the CPU, one fused kernel each way (autograd/functions.h, fused_layer_norm);
  // elsewhere the composition, which every device runs.
  const bool fused = x.device().is_cpu() && (x.dtype() == kFloat32 || x.dtype() == kFloat64) &&
                     (!weight.defined() || (weight.dtype() == x.dtype() && weight.device() == x.device()));
  if (fused) {
    int64_t n = 1;
    for (int64_t d : normalized_shape) n *= d;
    return weft::fused_layer_norm(x.contiguous(), n, weight.defined() ? weight.contiguous() : Tensor(),
                                  bias.defined() ? bias.contiguous() : Tensor(), eps);
  }
  Tensor y = layer_norm(x, int64_t(normalized_shape.size()), eps);
  return weight.defined() ? y * weight + bias : y;  // (.., *shape) broadcast against (*shape)
}

std::string LayerNorm::repr() const {
  return detail::str("LayerNorm(", Shape(normalized_shape), ", eps=", eps, ", elementwise_affine=",
                     weight.defined() ? "True" : "False", ")");
}

std::shared_ptr<Module> LayerNorm::make_fresh() const {
  return std::make_shared<LayerNorm>(normalized_shape, eps, weight.defined());
}

// ---- RMSNorm --------------------------------------------------------------------------------

RMSNorm::RMSNorm(std::vector<int64_t> shape, std::optional<double> eps_, bool affine)
    : weight(register_parameter("weight", affine ? ones_param(shape) : Tensor())),
      normalized_shape(std::move(shape)),
      eps(eps_) {
  WEFT_CHECK(!normalized_shape.empty(), "RMSNorm: normalized_shape must name at least one dim");
  WEFT_CHECK(!eps || *eps >= 0, "RMSNorm: eps must be >= 0, got ", eps.value_or(0));
}

Tensor RMSNorm::forward(const Tensor& x) {
  check_trailing("RMSNorm", x, normalized_shape);
  Tensor y = rms_norm(x, int64_t(normalized_shape.size()), eps.value_or(machine_epsilon(x.dtype())));
  return weight.defined() ? y * weight : y;
}

std::string RMSNorm::repr() const {
  return detail::str("RMSNorm(", Shape(normalized_shape), ", eps=", eps ? detail::str(*eps) : std::string("None"),
                     ", elementwise_affine=", weight.defined() ? "True" : "False", ")");
}

std::shared_ptr<Module> RMSNorm::make_fresh() const {
  return std::make_shared<RMSNorm>(normalized_shape, eps, weight.defined());
}

// ---- GroupNorm ------------------------------------------------------------------------------

GroupNorm::GroupNorm(int64_t groups, int64_t channels, double eps_, bool affine)
    : weight(register_parameter("weight", affine ? ones_param({channels}) : Tensor())),
      bias(register_parameter("bias", affine ? zeros_param({channels}) : Tensor())),
      num_groups(groups),
      num_channels(channels),
      eps(eps_) {
  WEFT_CHECK(groups > 0 && channels > 0 && channels % groups == 0, "GroupNorm: ", channels,
             " channels do not split into ", groups, " equal groups");
}

Tensor GroupNorm::forward(const Tensor& x) {
  WEFT_CHECK(x.dim() >= 2 && x.size(1) == num_channels, "GroupNorm(", num_groups, ", ", num_channels, "): input ",
             x.shape(), " must be (N, ", num_channels, ", *)");
  // (N, C, *) -> (N, G, C/G * prod(*)): each group's values in one row, normalised.
  const int64_t n = x.size(0);
  Tensor y = layer_norm(x.reshape({n, num_groups, x.numel() / (n * num_groups)}), 1, eps).reshape(x.shape());
  if (!weight.defined()) return y;
  std::vector<int64_t> per_channel(size_t(x.dim()), 1);  // (1, C, 1, ...)
  per_channel[1] = num_channels;
  return y * weight.reshape(Shape(per_channel)) + bias.reshape(Shape(per_channel));
}

std::string GroupNorm::repr() const {
  return detail::str("GroupNorm(", num_groups, ", ", num_channels, ", eps=", eps, ", affine=",
                     weight.defined() ? "True" : "False", ")");
}

std::shared_ptr<Module> GroupNorm::make_fresh() const {
  return std::make_shared<GroupNorm>(num_groups, num_channels, eps, weight.defined());
}

}  // namespace weft::nn
