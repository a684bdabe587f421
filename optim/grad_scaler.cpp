#include "grad_scaler.h"

#include <cmath>

#include "../autograd/functions.h"
#include "../autograd/tape.h"
#include "../tensor/creation.h"
#include "../tensor/raw.h"

namespace weft::optim {

GradScaler::GradScaler(GradScalerOptions options) : options_(options), scale_(options.init_scale) {
  WEFT_CHECK(std::isfinite(options.init_scale) && options.init_scale > 0, "GradScaler: init_scale must be finite and "
             "positive, got ", options.init_scale);
  WEFT_CHECK(options.growth_factor > 1, "GradScaler: growth_factor must be > 1, got ", options.growth_factor);
  WEFT_CHECK(options.backoff_factor > 0 && options.backoff_factor < 1, "GradScaler: backoff_factor must be in (0, 1), "
             "got ", options.backoff_factor);
  WEFT_CHECK(options.growth_interval >= 1, "GradScaler: growth_interval must be >= 1, got ", options.growth_interval);
}

Tensor GradScaler::scale(const Tensor& loss) const {
  if (!options_.enabled) return loss;
  return loss * scale_;
}

bool all_finite(const Tensor& t) {
  if (t.numel() == 0) return true;
  const double m = raw::to_dtype(raw::reduce(raw::Reduce::Max, raw::unary(raw::Unary::Abs, t), {}, false), kFloat64)
                       .to(kCPU)
                       .item<double>();
  return std::isfinite(m);
}

void GradScaler::unscale_(Optimizer& opt) {
  if (!options_.enabled) return;
  WEFT_CHECK(stage_ == Stage::Ready, "GradScaler::unscale_: already called (or step() already ran) since the last "
             "update(); call it once per step, before step()");
  autograd::NoGradGuard no_grad;
  found_inf_ = false;
  const double inv = 1.0 / scale_;  // exact: the scale is a power of two unless set otherwise
  for (const Tensor& p : opt.params()) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    WEFT_CHECK(g.dtype() != kFloat16, "GradScaler::unscale_: a parameter of shape ", p.shape(), " has float16 "
               "gradients; unscaling them in float16 would underflow the small ones again. Keep the parameters "
               "float32 and run the forward under Autocast(kFloat16) (docs/mixed-precision.md)");
    raw::binary_scalar_(raw::Binary::Mul, g, inv);
    if (!found_inf_) found_inf_ = !all_finite(g);
  }
  if (options_.agree) found_inf_ = options_.agree(found_inf_);
  stage_ = Stage::Unscaled;
}

bool GradScaler::step(Optimizer& opt) {
  if (options_.enabled) {
    WEFT_CHECK(stage_ != Stage::Stepped, "GradScaler::step: already called since the last update()");
    if (stage_ == Stage::Ready) unscale_(opt);
  }
  return step([&opt] { opt.step(); });
}

bool GradScaler::step(const std::function<void()>& update) {
  if (!options_.enabled) {
    update();
    return true;
  }
  WEFT_CHECK(stage_ == Stage::Unscaled, "GradScaler::step: ",
             stage_ == Stage::Stepped ? "already called since the last update()"
                                      : "call unscale_() first: it finds whether a gradient is inf or NaN");
  stage_ = Stage::Stepped;
  if (found_inf_) {
    ++skipped_;
    return false;
  }
  update();
  return true;
}

void GradScaler::update() {
  if (!options_.enabled) return;
  WEFT_CHECK(stage_ == Stage::Stepped, "GradScaler::update: no step() since the last update() (nothing to decide "
             "the scale from)");
  if (found_inf_) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
  } else if (++growth_tracker_ >= options_.growth_interval) {  // >=: a loaded tracker may exceed it
    // Never past float32's range (as PyTorch): a float32 loss times it would be inf.
    const double grown = scale_ * options_.growth_factor;
    if (std::isfinite(static_cast<float>(grown))) scale_ = grown;
    growth_tracker_ = 0;
  }
  stage_ = Stage::Ready;
}

nn::NamedTensors GradScaler::state_dict() const {
  nn::NamedTensors out;
  out.emplace_back("scale", full({}, scale_, {.dtype = kFloat64}));
  out.emplace_back("growth_tracker", full({}, static_cast<double>(growth_tracker_), {.dtype = kInt64}));
  return out;
}

void GradScaler::load_state_dict(const nn::NamedTensors& state) {
  double scale = -1;
  int64_t tracker = -1;
  for (const auto& [name, t] : state) {
    WEFT_CHECK(t.numel() == 1, "GradScaler::load_state_dict: '", name, "' must hold one value, got shape ", t.shape());
    if (name == "scale") scale = raw::to_dtype(t, kFloat64).to(kCPU).item<double>();
    else if (name == "growth_tracker") tracker = raw::to_dtype(t, kInt64).to(kCPU).item<int64_t>();
    else throw Error(detail::str("GradScaler::load_state_dict: unexpected key '", name, "' (expected scale and "
                                 "growth_tracker)"));
  }
  WEFT_CHECK(std::isfinite(scale) && scale > 0, "GradScaler::load_state_dict: 'scale' missing or not a positive "
             "finite number (", scale, ")");
  WEFT_CHECK(tracker >= 0, "GradScaler::load_state_dict: 'growth_tracker' missing or negative");
  scale_ = scale;
  growth_tracker_ = tracker;
  stage_ = Stage::Ready;
}

}  // namespace weft::optim
