#include "optimizer.h"

#include <algorithm>
#include <map>

#include "../autograd/tape.h"
#include "../tensor/raw.h"

namespace weft::optim {

Optimizer::Optimizer(std::vector<Tensor> params, double lr) : params_(std::move(params)), lr_(lr) {
  WEFT_CHECK(lr >= 0, "optimizer: learning rate must be >= 0, got ", lr);
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    WEFT_CHECK(p.defined() && p.is_leaf() && p.requires_grad(), "optimizer: parameter ", i,
               " must be a leaf tensor that requires grad");
    WEFT_CHECK(p.is_contiguous(), "optimizer: parameter ", i, " of shape ", p.shape(), " must be contiguous");
  }
  state_.resize(params_.size());
}

Tensor& Optimizer::state(size_t i, const std::string& name) {
  for (auto& [n, t] : state_[i])
    if (n == name) return t;
  state_[i].emplace_back(name, zeros(params_[i].shape(), {.dtype = params_[i].dtype(), .device = params_[i].device()}));
  return state_[i].back().second;
}

bool Optimizer::has_state(size_t i, const std::string& name) const {
  for (const auto& [n, _] : state_[i])
    if (n == name) return true;
  return false;
}

std::vector<Tensor> Optimizer::state_of(const Tensor& param) const {
  std::vector<Tensor> out;
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].is_same(param))
      for (const auto& [_, t] : state_[i]) out.push_back(t);
  return out;
}

// The parameters with a gradient, grouped by device (in the order each device first
// appears), each group one fused update: one launch on a GPU, where per-parameter
// launches would cost more than the math.
void Optimizer::step() {
  autograd::NoGradGuard no_grad;
  ++step_count_;
  std::vector<std::pair<Device, std::vector<size_t>>> groups;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].grad().defined()) continue;
    const Device d = params_[i].device();
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == d; });
    if (it == groups.end()) it = groups.insert(groups.end(), {d, {}});
    it->second.push_back(i);
  }
  for (const auto& [device, idx] : groups) update(idx, step_count_);
  for (auto& hook : post_step_) hook(*this);
}

void Optimizer::set_lr(double lr) {
  WEFT_CHECK(lr >= 0, "optimizer: learning rate must be >= 0, got ", lr);
  lr_ = lr;
  if (lr_device_.defined()) raw::fill_(lr_device_, lr);
}

const Tensor& Optimizer::lr_on(Device device) {
  if (!lr_device_.defined() || lr_device_.device() != device)
    lr_device_ = full({1}, lr_, {.dtype = kFloat32, .device = device});
  return lr_device_;
}

void Optimizer::zero_grad(bool set_to_none) { autograd::zero_grad(params_, set_to_none); }

nn::NamedTensors Optimizer::state_dict() const {
  nn::NamedTensors out;
  out.emplace_back("step", full({}, static_cast<double>(step_count_), {.dtype = kInt64}));
  for (size_t i = 0; i < state_.size(); ++i)
    for (const auto& [name, t] : state_[i]) out.emplace_back(std::to_string(i) + "." + name, t);
  return out;
}

void Optimizer::load_state_dict(const nn::NamedTensors& saved) {
  std::map<std::string, Tensor> given(saved.begin(), saved.end());
  auto it = given.find("step");
  WEFT_CHECK(it != given.end(), "optimizer load_state_dict: no 'step' entry");
  step_count_ = it->second.item<int64_t>();
  for (const auto& [key, t] : saved) {
    if (key == "step") continue;
    const auto dot = key.find('.');
    WEFT_CHECK(dot != std::string::npos && dot > 0 && key.find_first_not_of("0123456789") == dot,
               "optimizer load_state_dict: unexpected key '", key, "'");
    const size_t i = std::stoul(key.substr(0, dot));
    WEFT_CHECK(i < params_.size(), "optimizer load_state_dict: key '", key, "' names parameter ", i, " but there are ",
               params_.size());
    WEFT_CHECK(t.shape() == params_[i].shape(), "optimizer load_state_dict: '", key, "' has shape ", t.shape(),
               ", parameter ", i, " has ", params_[i].shape());
    Tensor& dst = state(i, key.substr(dot + 1));
    raw::copy_(dst, t);
  }
}

}  // namespace weft::optim
