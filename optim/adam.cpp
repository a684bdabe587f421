#include "adam.h"

#include <algorithm>
#include <cmath>

#include "../tensor/raw.h"

namespace weft::optim {

Adam::Adam(std::vector<Tensor> params, const AdamOptions& opt, bool decoupled_wd)
    : Adam(std::vector<ParamGroup>{ParamGroup{std::move(params), std::nullopt, std::nullopt}}, opt, decoupled_wd) {}

Adam::Adam(std::vector<ParamGroup> groups, const AdamOptions& opt, bool decoupled_wd)
    : Optimizer(std::move(groups), opt.lr), options(opt), decoupled(decoupled_wd) {
  WEFT_CHECK(opt.beta1 >= 0 && opt.beta1 < 1 && opt.beta2 >= 0 && opt.beta2 < 1, "Adam: betas must be in [0, 1), got ",
             opt.beta1, ", ", opt.beta2);
  // Each named with its value: a NaN weight decay must not be reported as a bad eps.
  WEFT_CHECK(opt.eps >= 0 && std::isfinite(opt.eps), "Adam: eps must be finite and >= 0, got ", opt.eps);
  WEFT_CHECK(opt.weight_decay >= 0 && std::isfinite(opt.weight_decay),
             "Adam: weight_decay must be finite and >= 0, got ", opt.weight_decay);
}

// One fused raw::adam_step_ for the group (the formula: tensor/optim_math.h).
void Adam::update(const std::vector<size_t>& idx, int64_t t) {
  const AdamOptions& o = options;
  std::vector<Tensor> ps, gs, ms, vs;
  for (size_t i : idx) {
    ps.push_back(param(i));
    gs.push_back(grad(i));
    ms.push_back(state(i, "exp_avg"));
    vs.push_back(state(i, "exp_avg_sq"));
  }
  const Device dev = ps[0].device();
  const bool on_host = dev.is_cpu();  // a GPU kernel reads lr and t from device memory
  const size_t i0 = idx[0];           // one group: the same lr and weight decay for all of idx
  raw::adam_step_(ps, gs, ms, vs,
                  {.lr = lr_of(i0), .beta1 = o.beta1, .beta2 = o.beta2, .eps = o.eps,
                   .weight_decay = weight_decay_of(i0, o.weight_decay), .decoupled = decoupled, .step = t,
                   .lr_device = on_host ? Tensor() : lr_on(dev, i0),
                   .step_device = on_host ? Tensor() : step_on(dev, group_of(i0), t)});
}

// The step count on a GPU is incremented there, by the same (possibly graph-captured)
// work as the update, so a CUDA graph replaying the step keeps the bias correction
// moving; it is reset from the host count only when they disagree (a checkpoint was
// loaded).
const Tensor& Adam::step_on(Device dev, size_t group, int64_t t) {
  auto it = std::find_if(step_device_.begin(), step_device_.end(),
                         [&](const DeviceStep& s) { return s.device == dev && s.group == group; });
  if (it == step_device_.end()) {
    it = step_device_.insert(step_device_.end(),
                             {dev, group, full({1}, double(t - 1), {.dtype = kFloat32, .device = dev}), t - 1});
  } else if (it->value != t - 1) {
    raw::fill_(it->count, double(t - 1));
  }
  raw::binary_scalar_(raw::Binary::Add, it->count, 1.0);
  it->value = t;
  return it->count;
}

}  // namespace weft::optim
