#include "autocast.h"

namespace weft {

namespace {
struct State {
  bool enabled = false;
  DType dtype = kBFloat16;
};
thread_local State t_state;
}  // namespace

Autocast::Autocast(DType dtype, bool enabled) : prev_enabled_(t_state.enabled), prev_dtype_(t_state.dtype) {
  WEFT_CHECK(is_half(dtype), "Autocast: the lower-precision dtype must be bfloat16 or float16, got ", dtype);
  t_state = {enabled, dtype};
}

Autocast::~Autocast() { t_state = {prev_enabled_, prev_dtype_}; }

namespace autocast {

bool enabled() { return t_state.enabled; }
DType dtype() { return t_state.dtype; }

Autocast for_precision(DType precision) {
  return Autocast(is_half(precision) ? precision : kBFloat16, is_half(precision));
}

// Tensor::to(dtype) is the differentiable cast: its backward casts the gradient back.
Tensor lower(const Tensor& t) {
  if (!t_state.enabled || !t.defined() || t.dtype() == t_state.dtype) return t;
  if (t.dtype() != kFloat32 && !is_half(t.dtype())) return t;  // float64 and integers are left alone
  return t.to(t_state.dtype);
}

Tensor to_float32(const Tensor& t) {
  if (!t_state.enabled || !t.defined() || !is_half(t.dtype())) return t;
  return t.to(kFloat32);
}

const std::vector<std::string>& lower_precision_ops() {
  static const std::vector<std::string> ops{"matmul", "linear", "conv2d"};
  return ops;
}

const std::vector<std::string>& float32_ops() {
  static const std::vector<std::string> ops{"softmax",  "log_softmax", "cross_entropy", "nll_loss",
                                            "mse_loss", "layer_norm",  "rms_norm",      "batch_norm"};
  return ops;
}

}  // namespace autocast
}  // namespace weft
