#include "linear.h"

#include <cmath>

#include "../autograd/autocast.h"
#include "../autograd/functions.h"
#include "init.h"

namespace weft::nn {

Linear::Linear(int64_t in, int64_t out, bool with_bias)
    // (sizes clamped to 0 so that the check below, not empty(), reports a bad one)
    : weight(register_parameter("weight", empty({out >= 0 ? out : 0, in >= 0 ? in : 0}))),
      bias(register_parameter("bias", with_bias ? empty({out >= 0 ? out : 0}) : Tensor())),
      in_features(in),
      out_features(out) {
  WEFT_CHECK(in > 0 && out > 0, "Linear: features must be positive, got in=", in, " out=", out);
  reset_parameters();
}

void Linear::reset_parameters(Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  init::uniform_(weight, -bound, bound, gen);
  if (bias.defined()) init::uniform_(bias, -bound, bound, gen);
}

Tensor Linear::forward(const Tensor& x) {
  WEFT_CHECK(x.dim() >= 1 && x.size(-1) == in_features, "Linear(", in_features, ", ", out_features, "): input ",
             x.shape(), " must end in ", in_features, " features");
  return linear(x, weight, bias, transposed_weight(x.numel() / in_features));
}

Tensor Linear::transposed_weight(int64_t rows) {
  // (Under autocast the product runs on a 16-bit copy of the weight: no float32 transpose.)
  if (!keep_transposed_weight || rows > kTransposeMaxRows || !TransposedWeightScope::active() || autocast::enabled() ||
      !weight.device().is_cpu() || !weight.is_contiguous())
    return Tensor();
  TransposedCopy& c = *transposed_;
  std::lock_guard lock(c.mutex);
  if (!c.value.defined() || c.storage.lock() != weight.storage() || c.offset != weight.offset() ||
      c.version != weight.version()) {
    if (!c.value.defined()) TransposedWeightScope::track(transposed_);  // once per scope
    c.value = weight.detach().t().contiguous();  // (in, out), row-major
    c.storage = weight.storage(), c.offset = weight.offset(), c.version = weight.version();
  }
  return c.value;
}

bool Linear::holds_transposed_weight() const {
  std::lock_guard lock(transposed_->mutex);
  return transposed_->value.defined();
}

namespace {
struct ScopeState {
  int depth = 0;
  std::vector<std::weak_ptr<Linear::TransposedCopy>> copies;
};
thread_local ScopeState t_scope;
}  // namespace

TransposedWeightScope::TransposedWeightScope() { ++t_scope.depth; }

TransposedWeightScope::~TransposedWeightScope() {
  if (--t_scope.depth > 0) return;
  for (auto& weak : t_scope.copies)
    if (auto c = weak.lock()) {
      std::lock_guard lock(c->mutex);
      c->value = Tensor();
    }
  t_scope.copies.clear();
}

bool TransposedWeightScope::active() { return t_scope.depth > 0; }

int64_t TransposedWeightScope::bytes() {
  int64_t total = 0;
  for (auto& weak : t_scope.copies)
    if (auto c = weak.lock()) {
      std::lock_guard lock(c->mutex);
      if (c->value.defined()) total += c->value.numel() * int64_t(element_size(c->value.dtype()));
    }
  return total;
}

void TransposedWeightScope::track(const std::shared_ptr<Linear::TransposedCopy>& copy) {
  t_scope.copies.push_back(copy);
}

std::string Linear::repr() const {
  return detail::str("Linear(in_features=", in_features, ", out_features=", out_features,
                     ", bias=", bias.defined() ? "true" : "false", ")");
}

}  // namespace weft::nn
