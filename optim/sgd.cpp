#include "sgd.h"

#include <cmath>

#include "../tensor/raw.h"

namespace weft::optim {

SGD::SGD(std::vector<Tensor> params, const SGDOptions& opt)
    : SGD(std::vector<ParamGroup>{ParamGroup{std::move(params), std::nullopt, std::nullopt}}, opt) {}

SGD::SGD(std::vector<ParamGroup> groups, const SGDOptions& opt) : Optimizer(std::move(groups), opt.lr), options(opt) {
  WEFT_CHECK(opt.momentum >= 0 && std::isfinite(opt.momentum), "SGD: momentum must be finite and >= 0, got ",
             opt.momentum);
  WEFT_CHECK(opt.weight_decay >= 0 && std::isfinite(opt.weight_decay),
             "SGD: weight_decay must be finite and >= 0, got ", opt.weight_decay);
  WEFT_CHECK(!opt.nesterov || (opt.momentum > 0 && opt.dampening == 0),
             "SGD: Nesterov momentum needs momentum > 0 and dampening 0");
}

std::vector<std::string> SGD::state_names() const {
  if (options.momentum == 0) return {};
  return {"momentum_buffer"};
}

// One fused raw::sgd_step_ per group (the formula: tensor/optim_math.h).
void SGD::update(const std::vector<size_t>& idx, int64_t) {
  if (options.momentum == 0) return step_group(idx, false);
  // PyTorch's rule: the first step with momentum sets buf = d. A parameter can get its
  // first gradient later than the others, so the ones without a buffer yet go apart.
  std::vector<size_t> fresh, running;
  for (size_t i : idx) (has_state(i, "momentum_buffer") ? running : fresh).push_back(i);
  if (!fresh.empty()) step_group(fresh, true);
  if (!running.empty()) step_group(running, false);
}

void SGD::step_group(const std::vector<size_t>& idx, bool first) {
  const SGDOptions& o = options;
  std::vector<Tensor> ps, gs, bufs;
  for (size_t i : idx) {
    ps.push_back(param(i));
    gs.push_back(grad(i));
    if (o.momentum > 0) bufs.push_back(state(i, "momentum_buffer"));
  }
  const Device dev = ps[0].device();
  const size_t i0 = idx[0];  // one group: the same lr and weight decay for all of idx
  raw::sgd_step_(ps, gs, bufs,
                 {.lr = lr_of(i0), .momentum = o.momentum, .dampening = o.dampening,
                  .weight_decay = weight_decay_of(i0, o.weight_decay), .nesterov = o.nesterov, .first = first,
                  .lr_device = dev.is_cpu() ? Tensor() : lr_on(dev, i0)});
}

}  // namespace weft::optim
