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

// Multiplies the learning rate by `factor` once a metric (validation loss, say) has not
// improved for more than `patience` calls of step(metric), as PyTorch's
// ReduceLROnPlateau does:
//   better:  mode min, rel: m < best (1 - threshold);  min, abs: m < best - threshold
//            mode max, rel: m > best (1 + threshold);  max, abs: m > best + threshold
//   each step: a better metric becomes best and clears the count of bad calls, any
//   other (NaN included) adds one; during the `cooldown` calls after a reduction the
//   count stays 0; a count above patience sets lr = max(lr factor, min_lr) (unless that
//   changes it by eps or less) and starts the cooldown.
// Unlike the schedules above it is driven by the metric, not by a step count. With
// parameter groups it scales the optimizer's rate, each group keeping its ratio
// (optimizer.h), and min_lr bounds the optimizer's rate.
struct PlateauOptions {
  enum class Mode { Min, Max } mode = Mode::Min;
  double factor = 0.1;  // in [0, 1)
  int patience = 10;
  double threshold = 1e-4;
  enum class Threshold { Rel, Abs } threshold_mode = Threshold::Rel;
  int cooldown = 0;
  double min_lr = 0;
  double eps = 1e-8;
};

class ReduceLROnPlateau {
 public:
  explicit ReduceLROnPlateau(Optimizer& opt, const PlateauOptions& options = {});
  // One epoch's metric; returns true when it reduced the learning rate.
  bool step(double metric);
  double best() const { return best_; }
  int bad_epochs() const { return bad_; }
  const PlateauOptions options;

 private:
  bool better(double metric) const;

  Optimizer& opt_;
  double best_;
  int bad_ = 0, cooldown_left_ = 0;
};

// Rescales all gradients so their joint L2 norm is at most max_norm; returns the norm
// before clipping (the number worth logging).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace weft::optim
