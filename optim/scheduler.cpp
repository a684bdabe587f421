#include "scheduler.h"

#include <cmath>
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

}  // namespace weft::optim
