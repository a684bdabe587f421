// Learning-rate schedules. Call step() once per optimizer step (or per epoch for
// StepLR if you count in epochs); each sets the optimizer's lr from the step count.
#pragma once

#include <cstdint>

#include "optimizer.h"

namespace weft::optim {

class LRScheduler {
 public:
  explicit LRScheduler(Optimizer& opt) : opt_(opt), base_lr_(opt.lr()) {}
  virtual ~LRScheduler() = default;
  // Advances one step and sets the optimizer's learning rate.
  void step();
  int64_t last_step() const { return t_; }
  // The optimizer's learning rate when the schedule was made: the peak it scales.
  double base_lr() const { return base_lr_; }
  // The learning rate at step t (0 = before the first step()).
  virtual double lr_at(int64_t t) const = 0;
  // Jumps to step t (for resuming from a checkpoint).
  void set_step(int64_t t);

 protected:
  Optimizer& opt_;
  const double base_lr_;
  int64_t t_ = 0;
};

// lr = base * gamma^(floor(t / step_size))
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& opt, int64_t step_size, double gamma = 0.1);
  double lr_at(int64_t t) const override;
  const int64_t step_size;
  const double gamma;
};

// Linear warmup from ~0 to base over `warmup` steps, then a cosine decay to min_lr at
// `total` steps (held there after). With a short warmup this is the one-cycle shape.
class CosineWarmupLR : public LRScheduler {
 public:
  CosineWarmupLR(Optimizer& opt, int64_t warmup, int64_t total, double min_lr = 0.0);
  double lr_at(int64_t t) const override;
  const int64_t warmup, total;
  const double min_lr;
};

// Rescales all gradients so their joint L2 norm is at most max_norm; returns the norm
// before clipping (the number worth logging).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace weft::optim
