#include "scheduler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

#include "../autograd/tape.h"
#include "../tensor/raw.h"

namespace weft::optim {

void LRScheduler::step() {
  ++t_;
  opt_.set_lr(lr_at(t_));
}

void LRScheduler::set_step(int64_t t) {
  t_ = t;
  opt_.set_lr(lr_at(t_));
}

StepLR::StepLR(Optimizer& opt, int64_t step_size, double gamma) : LRScheduler(opt), step_size(step_size), gamma(gamma) {
  WEFT_CHECK(step_size > 0, "StepLR: step_size must be positive, got ", step_size);
}

double StepLR::lr_at(int64_t t) const { return base_lr_ * std::pow(gamma, static_cast<double>(t / step_size)); }

CosineWarmupLR::CosineWarmupLR(Optimizer& opt, int64_t warmup, int64_t total, double min_lr)
    : LRScheduler(opt), warmup(warmup), total(total), min_lr(min_lr) {
  WEFT_CHECK(warmup >= 0 && total > warmup, "CosineWarmupLR: need 0 <= warmup < total, got warmup ", warmup,
             ", total ", total);
  opt.set_lr(lr_at(0));
}

double CosineWarmupLR::lr_at(int64_t t) const {
  if (t < warmup) return base_lr_ * static_cast<double>(t + 1) / static_cast<double>(warmup + 1);
  const double progress = std::min(1.0, static_cast<double>(t - warmup) / static_cast<double>(total - warmup));
  return min_lr + (base_lr_ - min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * progress));
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  autograd::NoGradGuard no_grad;
  double total = 0;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    total += raw::reduce(raw::Reduce::Sum, raw::unary(raw::Unary::Square, raw::to_dtype(g, kFloat64)), {}, false)
                 .item<double>();
  }
  const double norm = std::sqrt(total);
  const double scale = max_norm / (norm + 1e-6);
  if (scale < 1)
    for (const Tensor& p : params)
      if (Tensor g = p.grad(); g.defined()) raw::binary_scalar_(raw::Binary::Mul, g, scale);
  return norm;
}

ReduceLROnPlateau::ReduceLROnPlateau(Optimizer& opt, const PlateauOptions& o)
    : options(o),
      opt_(opt),
      best_(o.mode == PlateauOptions::Mode::Min ? std::numeric_limits<double>::infinity()
                                                : -std::numeric_limits<double>::infinity()) {
  WEFT_CHECK(o.factor >= 0 && o.factor < 1, "ReduceLROnPlateau: factor must be in [0, 1), got ", o.factor);
  WEFT_CHECK(o.patience >= 0 && o.cooldown >= 0, "ReduceLROnPlateau: patience and cooldown must be >= 0, got ",
             o.patience, " and ", o.cooldown);
  WEFT_CHECK(o.threshold >= 0 && std::isfinite(o.threshold), "ReduceLROnPlateau: threshold must be finite and >= 0, got ",
             o.threshold);
  WEFT_CHECK(o.min_lr >= 0 && std::isfinite(o.min_lr), "ReduceLROnPlateau: min_lr must be finite and >= 0, got ",
             o.min_lr);
}

bool ReduceLROnPlateau::better(double m) const {
  const bool rel = options.threshold_mode == PlateauOptions::Threshold::Rel;
  if (options.mode == PlateauOptions::Mode::Min) return m < (rel ? best_ * (1 - options.threshold) : best_ - options.threshold);
  return m > (rel ? best_ * (1 + options.threshold) : best_ + options.threshold);
}

bool ReduceLROnPlateau::step(double metric) {
  if (better(metric)) {  // false for NaN: it counts as a bad epoch
    best_ = metric;
    bad_ = 0;
  } else {
    ++bad_;
  }
  if (cooldown_left_ > 0) {
    --cooldown_left_;
    bad_ = 0;
  }
  if (bad_ <= options.patience) return false;
  bad_ = 0;
  cooldown_left_ = options.cooldown;
  const double old_lr = opt_.lr(), new_lr = std::max(old_lr * options.factor, options.min_lr);
  if (old_lr - new_lr <= options.eps) return false;
  opt_.set_lr(new_lr);
  return true;
}

}  // namespace weft::optim
