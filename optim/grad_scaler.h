// GradScaler: dynamic loss scaling, PyTorch's torch.amp.GradScaler.
//
// In float16 a gradient below 2^-24 becomes 0 and one above 65504 becomes inf. Scaling
// the loss by S before backward scales every gradient by S (the chain rule is linear),
// lifting small gradients out of the underflow range; dividing them by S afterwards
// ("unscaling") restores their values. S is chosen dynamically: as large as it can be
// without overflowing.
//
//   optim::GradScaler scaler;                    // S = 65536
//   for (...) {
//     opt.zero_grad();
//     Tensor loss = ...;
//     scaler.scale(loss).backward();             // gradients are S times too large
//     scaler.unscale_(opt);                      // optional: to clip the true gradients
//     optim::clip_grad_norm(model->parameters(), 1.0);
//     scaler.step(opt);                          // unscales if not done; skips on inf/NaN
//     scaler.update();                           // adjusts S for the next step
//   }
//
// The rule of update(), as PyTorch's: a step whose gradients held an inf or a NaN is
// skipped (the parameters and the optimizer's state stay as they were) and S is
// multiplied by backoff_factor (0.5); after growth_interval (2000) steps in a row without
// one, S is multiplied by growth_factor (2). So S settles just below the overflow point,
// halving on the rare step that overflows.
//
// One optimizer per scaler (PyTorch's GradScaler can serve several, stepping each and
// backing off if any found an inf): step() twice before update() is an error here.
//
// The gradients it unscales are those of float32 parameters (the usual float16 setup:
// the model in float32 under Autocast, docs/mixed-precision.md). There the scaling is
// exact arithmetic on powers of two and changes no result, but it still catches a step
// whose gradients went inf or NaN and skips it. A float16 gradient (a model converted to
// float16) is refused, as PyTorch refuses it: unscaling in float16 would underflow the
// small gradients the scaling was there to keep. Data parallel: call it after
// ddp.synchronize(), so that every rank sees the same summed gradients and takes the same
// decision (the compressing comm hooks make a bucket NaN on every rank when any rank's
// gradient overflowed, for this). Pipeline stages each hold other parameters: give their
// scalers an `agree` (GradScalerOptions) that all-reduces the found-inf flag. A skipped
// step does not count in opt.steps_taken(); a schedule stepped every iteration still
// advances (PyTorch warns about this; weft leaves it to the caller).
#pragma once

#include <cstdint>
#include <functional>

#include "optimizer.h"

namespace weft::optim {

struct GradScalerOptions {
  double init_scale = 65536.0;  // 2^16
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  bool enabled = true;  // false: scale() and unscale_() do nothing and step() always steps
  // Several scalers that must decide together (the stages of a pipeline each unscale their
  // own parameters): given this one's found-inf, returns whether ANY of them found one --
  // an all-reduce (Max) of the flag over their ranks. Then all skip, or all step, and
  // their scales stay equal. Empty: decide alone.
  std::function<bool(bool)> agree = {};
};

// Whether every value of `t` is finite (on any device): its largest |value| is inf if
// any value is, NaN if any is (max propagates NaN, as PyTorch's). An empty tensor is.
bool all_finite(const Tensor& t);

class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions options = {});

  // loss * scale (recorded on the tape, so backward scales every gradient).
  Tensor scale(const Tensor& loss) const;
  // Divides every gradient of opt's parameters by the scale, in place, and records
  // whether any of them holds an inf or a NaN. At most once between two update()s.
  void unscale_(Optimizer& opt);
  // unscale_(opt) unless done; then opt.step() unless a gradient was inf or NaN.
  // Returns whether it stepped.
  bool step(Optimizer& opt);
  // The same for an update that is not one optimizer's step (a parameter-server worker's
  // push): after unscale_(), runs `update` unless a gradient was inf or NaN. Returns
  // whether it ran.
  bool step(const std::function<void()>& update);
  // Adjusts the scale after step() (see above). Throws if step() was not called since
  // the last update().
  void update();

  double get_scale() const { return scale_; }
  bool is_enabled() const { return options_.enabled; }
  bool found_inf() const { return found_inf_; }        // in the last unscale_
  int64_t skipped_steps() const { return skipped_; }     // over the scaler's life
  int64_t growth_tracker() const { return growth_tracker_; }  // steps in a row without inf
  const GradScalerOptions& options() const { return options_; }

  // "scale" and "growth_tracker" (0-d float64 and int64), for checkpoints; PyTorch's
  // GradScaler.state_dict has the same two values (and the factors, which are options here).
  nn::NamedTensors state_dict() const;
  void load_state_dict(const nn::NamedTensors& state);

 private:
  enum class Stage { Ready, Unscaled, Stepped };
  GradScalerOptions options_;
  double scale_;
  int64_t growth_tracker_ = 0;
  int64_t skipped_ = 0;
  bool found_inf_ = false;
  Stage stage_ = Stage::Ready;
};

}  // namespace weft::optim
