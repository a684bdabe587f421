#include "optimizer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "../autograd/tape.h"
#include "../tensor/raw.h"

namespace weft::optim {

Optimizer::Optimizer(std::vector<Tensor> params, double lr)
    : Optimizer(std::vector<ParamGroup>{ParamGroup{std::move(params), std::nullopt, std::nullopt}}, lr) {}

Optimizer::Optimizer(std::vector<ParamGroup> groups, double lr) : lr_(lr) {
  // A NaN or infinite rate turns every weight into NaN (both comparisons fail for NaN).
  WEFT_CHECK(lr >= 0 && lr < std::numeric_limits<double>::infinity(),
             "optimizer: learning rate must be finite and >= 0, got ", lr);
  for (size_t g = 0; g < groups.size(); ++g) {
    const ParamGroup& group = groups[g];
    const double glr = group.lr.value_or(lr);
    WEFT_CHECK(glr >= 0 && glr < std::numeric_limits<double>::infinity(), "optimizer: group ", g,
               "'s learning rate must be finite and >= 0, got ", glr);
    WEFT_CHECK(!group.weight_decay || (*group.weight_decay >= 0 && std::isfinite(*group.weight_decay)),
               "optimizer: group ", g, "'s weight_decay must be finite and >= 0, got ", group.weight_decay.value_or(0));
    // A group with its own rate under an optimizer rate of 0 keeps its rate through
    // set_lr only as a ratio, which 0 cannot carry.
    WEFT_CHECK(lr > 0 || glr == 0, "optimizer: group ", g, " sets lr ", glr, " but the optimizer's lr is 0; a group's "
               "rate is kept as a ratio to the optimizer's");
    groups_.push_back({lr > 0 ? glr / lr : 1.0, group.weight_decay, Tensor()});
    for (const Tensor& p : group.params) {
      const size_t i = params_.size();
      WEFT_CHECK(p.defined() && p.is_leaf() && p.requires_grad(), "optimizer: parameter ", i,
                 " must be a leaf tensor that requires grad");
      WEFT_CHECK(p.is_contiguous(), "optimizer: parameter ", i, " of shape ", p.shape(), " must be contiguous");
      for (size_t j = 0; j < i; ++j)
        WEFT_CHECK(!params_[j].is_same(p), "optimizer: parameter ", i, " (group ", g, ") is parameter ", j,
                   " (group ", group_of_[j], ") again; a parameter may be in one group only");
      params_.push_back(p);
      group_of_.push_back(g);
    }
  }
  state_.resize(params_.size());
  master_.resize(params_.size());
}

void Optimizer::refresh_masters(const std::vector<size_t>& idx) {
  for (size_t i : idx) {
    Master& m = master_[i];
    const Tensor& p = params_[i];
    if (!is_half(p.dtype())) {  // (again) a float32 or float64 parameter: it is its own master
      m = Master{};
      continue;
    }
    if (!m.value.defined() || m.storage.lock() != p.storage() || m.version != p.version())
      m = {raw::to_dtype(p.detach(), kFloat32), p.storage(), p.version()};
  }
}

void Optimizer::write_back_masters(const std::vector<size_t>& idx) {
  for (size_t i : idx) {
    if (!master_[i].value.defined()) continue;
    raw::copy_(params_[i], master_[i].value);  // rounds to 16 bits
    master_[i].version = params_[i].version();
  }
}

Tensor Optimizer::grad(size_t i) const {
  const Tensor g = params_[i].grad();
  return master_[i].value.defined() ? raw::to_dtype(g, kFloat32) : g;
}

std::vector<ParamGroup> decay_groups(const nn::Module& model, double weight_decay) {
  ParamGroup decay{{}, std::nullopt, weight_decay}, no_decay{{}, std::nullopt, 0.0};
  for (const Tensor& p : model.parameters()) (p.dim() >= 2 ? decay : no_decay).params.push_back(p);
  return {decay, no_decay};
}

Tensor& Optimizer::state(size_t i, const std::string& name) {
  for (auto& [n, t] : state_[i])
    if (n == name) return t;
  const DType dt = is_half(params_[i].dtype()) ? kFloat32 : params_[i].dtype();
  state_[i].emplace_back(name, zeros(params_[i].shape(), {.dtype = dt, .device = params_[i].device()}));
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

// The parameters with a gradient, grouped by device and parameter group (in the order
// each first appears), each group one fused update: one launch on a GPU, where
// per-parameter launches would cost more than the math.
void Optimizer::step() {
  autograd::NoGradGuard no_grad;
  ++step_count_;
  std::vector<std::pair<std::pair<Device, size_t>, std::vector<size_t>>> batches;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].grad().defined()) continue;
    const std::pair<Device, size_t> key{params_[i].device(), group_of_[i]};
    auto it = std::find_if(batches.begin(), batches.end(), [&](const auto& b) { return b.first == key; });
    if (it == batches.end()) it = batches.insert(batches.end(), {key, {}});
    it->second.push_back(i);
  }
  for (const auto& batch : batches) {
    refresh_masters(batch.second);
    update(batch.second, step_count_);
    write_back_masters(batch.second);
  }
  for (auto& hook : post_step_) hook(*this);
}

void Optimizer::set_lr(double lr) {
  WEFT_CHECK(lr >= 0 && lr < std::numeric_limits<double>::infinity(),
             "optimizer: learning rate must be finite and >= 0, got ", lr);
  lr_ = lr;
  for (size_t g = 0; g < groups_.size(); ++g)
    if (groups_[g].lr_device.defined()) raw::fill_(groups_[g].lr_device, group_lr(g));
}

const Tensor& Optimizer::lr_on(Device device, size_t i) {
  Tensor& t = groups_[group_of_[i]].lr_device;
  if (!t.defined() || t.device() != device) t = full({1}, lr_of(i), {.dtype = kFloat32, .device = device});
  return t;
}

void Optimizer::zero_grad(bool set_to_none) { autograd::zero_grad(params_, set_to_none); }

nn::NamedTensors Optimizer::state_dict() const {
  nn::NamedTensors out;
  out.emplace_back("step", full({}, static_cast<double>(step_count_), {.dtype = kInt64}));
  for (size_t i = 0; i < state_.size(); ++i) {
    for (const auto& [name, t] : state_[i]) out.emplace_back(std::to_string(i) + "." + name, t);
    if (master_[i].value.defined() && is_half(params_[i].dtype()))
      out.emplace_back(std::to_string(i) + ".master", master_[i].value);
  }
  return out;
}

namespace {

// "a, b, c": at most the first 8, then how many there are in all (a 16-layer model's
// state has 64 keys; the first few say what went wrong).
std::string join_some(const std::vector<std::string>& keys) {
  constexpr size_t kShown = 8;
  std::string s;
  for (size_t k = 0; k < keys.size() && k < kShown; ++k) s += (k ? ", " : "") + keys[k];
  if (keys.size() > kShown) s += detail::str(", ... (", keys.size(), " in all)");
  return s;
}

// "12.exp_avg" -> (12, "exp_avg"); (-1, "") for a key of another shape.
std::pair<int64_t, std::string> split_state_key(const std::string& key) {
  const auto dot = key.find('.');
  if (dot == std::string::npos || dot == 0 || dot > 9 || key.find_first_not_of("0123456789") != dot) return {-1, ""};
  return {std::stoll(key.substr(0, dot)), key.substr(dot + 1)};
}

// The step count of a saved state: one whole number >= 0.
int64_t saved_step(const Tensor& t) {
  WEFT_CHECK(t.numel() == 1, "optimizer load_state_dict: 'step' must hold one number, it has shape ", t.shape());
  const int64_t step = t.item<int64_t>();
  WEFT_CHECK(step >= 0, "optimizer load_state_dict: 'step' must be >= 0, got ", step);
  return step;
}

}  // namespace

void Optimizer::load_state_dict(const nn::NamedTensors& saved) {
  const std::vector<std::string> names = state_names();
  std::vector<std::string> unexpected, missing, wrong;
  std::vector<std::vector<std::string>> present(params_.size());  // the buffers given, per parameter
  std::optional<int64_t> step;
  std::vector<std::pair<size_t, Tensor>> masters;  // "<i>.master" of 16-bit parameters
  for (const auto& [key, t] : saved) {
    if (key == "step") {
      step = saved_step(t);
      continue;
    }
    const auto [i, name] = split_state_key(key);
    if (name == "master" && size_t(i) < params_.size() && is_half(params_[size_t(i)].dtype()) &&
        t.shape() == params_[size_t(i)].shape()) {
      masters.emplace_back(size_t(i), t);
      continue;
    }
    if (i < 0 || std::find(names.begin(), names.end(), name) == names.end()) unexpected.push_back(key);
    else if (size_t(i) >= params_.size())
      wrong.push_back(detail::str(key, " names parameter ", i, " but there are ", params_.size()));
    else if (!(t.shape() == params_[size_t(i)].shape()))
      wrong.push_back(detail::str(key, " (state ", t.shape(), ", parameter ", i, " ", params_[size_t(i)].shape(), ")"));
    else present[size_t(i)].push_back(name);
  }
  WEFT_CHECK(step, "optimizer load_state_dict: no 'step' entry");
  bool any_state = false;
  for (size_t i = 0; i < params_.size(); ++i) {
    any_state |= !present[i].empty();
    for (const std::string& name : names)
      if (!present[i].empty() && std::find(present[i].begin(), present[i].end(), name) == present[i].end())
        missing.push_back(std::to_string(i) + "." + name);
  }
  // A parameter without state has not stepped (no gradient yet); all of them without
  // state after steps means the state is another optimizer's, one that keeps none.
  if (*step > 0 && !any_state)
    for (size_t i = 0; i < params_.size(); ++i)
      for (const std::string& name : names) missing.push_back(std::to_string(i) + "." + name);
  check_state_keys(unexpected, missing, wrong);

  step_count_ = *step;
  for (size_t i = 0; i < params_.size(); ++i)  // buffers the saved state lacks go: it is loaded as saved
    std::erase_if(state_[i], [&](const auto& buffer) {
      return std::find(present[i].begin(), present[i].end(), buffer.first) == present[i].end();
    });
  for (const auto& [key, t] : saved) {
    if (key == "step") continue;
    const auto [i, name] = split_state_key(key);
    if (name == "master") continue;
    Tensor& dst = state(size_t(i), name);
    raw::copy_(dst, t);
  }
  // A saved master copy goes on only while its parameter stays as it is now (loaded
  // before this, as a checkpoint restores the model first); see refresh_masters.
  for (auto& m : master_) m = Master{};
  for (const auto& [i, t] : masters) {
    Tensor value = empty(params_[i].shape(), {.dtype = kFloat32, .device = params_[i].device()});
    raw::copy_(value, raw::to_device(t, params_[i].device()));  // beside its parameter, whatever the file's device
    master_[i] = {value, params_[i].storage(), params_[i].version()};
  }
}

void Optimizer::check_state_keys(const std::vector<std::string>& unexpected, const std::vector<std::string>& missing,
                                 const std::vector<std::string>& wrong) const {
  if (unexpected.empty() && missing.empty() && wrong.empty()) return;
  std::string keeps;
  for (const std::string& name : state_names()) keeps += (keeps.empty() ? "" : ", ") + name;
  std::string problems;
  if (!wrong.empty()) problems += "wrong keys: " + join_some(wrong) + "; ";
  if (!unexpected.empty()) problems += "unexpected keys: " + join_some(unexpected) + "; ";
  if (!missing.empty()) problems += "missing keys: " + join_some(missing) + "; ";
  throw Error(detail::str("optimizer load_state_dict: the state does not fit this ", kind(), " optimizer (it keeps ",
                          keeps.empty() ? "no buffers" : keeps, " per parameter): ",
                          problems.substr(0, problems.size() - 2)));
}

}  // namespace weft::optim
