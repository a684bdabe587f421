#include "pruner.h"

#include <cstdio>
#include <sstream>

#include "../autograd/tape.h"
#include "../tensor/raw.h"

namespace weft::prune {

std::pair<std::string, std::string> split_param_name(const std::string& dotted) {
  const size_t dot = dotted.rfind('.');
  if (dot == std::string::npos) return {"", dotted};
  return {dotted.substr(0, dot), dotted.substr(dot + 1)};
}

namespace {
int64_t count_nonzeros(const Tensor& t) {
  Tensor nz = raw::to_dtype(raw::compare_scalar(raw::Compare::Ne, t, 0.0), kInt64);
  return raw::reduce(raw::Reduce::Sum, nz, {}, false).item<int64_t>();
}

Tensor find_param(const nn::Module& model, const std::string& name) {
  for (const auto& [n, p] : model.named_parameters())
    if (n == name) return p;
  throw Error(detail::str("Pruner: the model has no parameter '", name, "'"));
}

// A mask must be 0/1 and shaped like its parameter; it is stored in the parameter's dtype.
Tensor checked_mask(const std::string& name, const Tensor& param, const Tensor& mask) {
  WEFT_CHECK(mask.defined() && mask.shape() == param.shape(), "Pruner: the mask for '", name, "' has shape ",
             mask.defined() ? mask.shape() : Shape{}, ", the parameter has ", param.shape());
  Tensor m = raw::to_dtype(raw::to_device(mask, param.device()), param.dtype());
  Tensor ok = raw::binary(raw::Binary::Mul, m, raw::binary_scalar(raw::Binary::Sub, m, 1.0));  // m(m-1) = 0
  WEFT_CHECK(count_nonzeros(ok) == 0, "Pruner: the mask for '", name, "' must hold only 0 and 1");
  return m;
}
}  // namespace

Pruner::Pruner(nn::Module& model, std::vector<std::string> targets)
    : model_(model), targets_(std::move(targets)), state_(std::make_shared<State>()) {
  if (targets_.empty()) {
    for (const auto& [n, p] : model.named_parameters())
      if (split_param_name(n).second == "weight" && p.dim() >= 2) targets_.push_back(n);
    WEFT_CHECK(!targets_.empty(), "Pruner: the model has no weight with 2 or more dims to prune");
  }
  for (const auto& n : targets_) find_param(model, n);  // fail early on a bad name
}

Tensor Pruner::weight(size_t i) const { return find_param(model_, name(i)); }

Tensor Pruner::mask(size_t i) const {
  if (const Masked* m = find(name(i))) return m->slot->mask;
  return ones_like(weight(i));
}

bool Pruner::is_masked(const std::string& param_name) const { return find(param_name) != nullptr; }

Pruner::Masked* Pruner::find(const std::string& param_name) const {
  for (const auto& m : state_->masked)
    if (m->name == param_name) return m.get();
  return nullptr;
}

Pruner::Masked& Pruner::install(const std::string& param_name) {
  auto m = std::make_unique<Masked>();
  m->name = param_name;
  const auto [path, leaf] = split_param_name(param_name);
  m->owner = &model_.submodule(path);
  m->buffer = leaf + "_mask";
  m->param = find_param(model_, param_name);
  m->slot = std::make_shared<GradSlot>();
  m->slot->mask = m->owner->add_buffer(m->buffer, ones_like(m->param));
  m->slot->capture = state_->capture;
  // The gradient-ready hook: runs inside backward once this gradient is final, before
  // any optimizer can read it.
  m->hook = m->param.register_grad_ready_hook([slot = m->slot](const Tensor& leaf) {
    Tensor g = leaf.grad();
    if (!g.defined()) return;
    if (slot->capture) slot->dense_grad = raw::clone(g);
    raw::binary_(raw::Binary::Mul, g, slot->mask);
  });
  state_->masked.push_back(std::move(m));
  return *state_->masked.back();
}

void Pruner::set_mask(const std::string& param_name, const Tensor& mask) {
  Masked* m = find(param_name);
  const Tensor values = checked_mask(param_name, m ? m->param : find_param(model_, param_name), mask);
  if (!m) m = &install(param_name);
  autograd::NoGradGuard no_grad;
  raw::copy_(m->slot->mask, values);
  raw::binary_(raw::Binary::Mul, m->param, m->slot->mask);
}

void Pruner::apply_all(const State& s, optim::Optimizer* opt) {
  autograd::NoGradGuard no_grad;
  for (const auto& m : s.masked) {
    raw::binary_(raw::Binary::Mul, m->param, m->slot->mask);
    if (!opt) continue;
    for (const Tensor& buf : opt->state_of(m->param)) raw::binary_(raw::Binary::Mul, buf, m->slot->mask);
  }
}

void Pruner::apply(optim::Optimizer* opt) { apply_all(*state_, opt); }

void Pruner::attach(optim::Optimizer& opt) {
  opt.add_post_step_hook([s = state_](optim::Optimizer& o) { apply_all(*s, &o); });
}

void Pruner::capture_dense_grads(bool on) {
  state_->capture = on;
  for (const auto& m : state_->masked) {
    m->slot->capture = on;
    if (!on) m->slot->dense_grad = Tensor();
  }
}

Tensor Pruner::dense_grad(size_t i) const {
  const Masked* m = find(name(i));
  WEFT_CHECK(m && m->slot->dense_grad.defined(), "Pruner::dense_grad: no dense gradient captured for '", name(i),
             "' (mask it, call capture_dense_grads(true), then run backward)");
  return m->slot->dense_grad;
}

void Pruner::make_permanent() {
  apply();
  for (const auto& m : state_->masked) {
    m->param.remove_grad_ready_hook(m->hook);
    m->owner->remove_buffer(m->buffer);
  }
  state_->masked.clear();
}

int64_t Pruner::numel() const {
  int64_t n = 0;
  for (size_t i = 0; i < size(); ++i) n += weight(i).numel();
  return n;
}

int64_t Pruner::nonzeros(size_t i) const {
  const Masked* m = find(name(i));
  return count_nonzeros(m ? m->slot->mask : weight(i));
}

int64_t Pruner::nonzeros() const {
  int64_t n = 0;
  for (size_t i = 0; i < size(); ++i) n += nonzeros(i);
  return n;
}

std::string Pruner::sparsity_report() const {
  std::ostringstream os;
  char line[160];
  std::snprintf(line, sizeof line, "%-24s %-18s %12s %12s %9s\n", "layer", "shape", "nonzeros", "total", "sparsity");
  os << line;
  for (size_t i = 0; i < size(); ++i) {
    const Tensor w = weight(i);
    const int64_t nz = nonzeros(i);
    std::ostringstream shape;
    shape << w.shape();
    std::snprintf(line, sizeof line, "%-24s %-18s %12lld %12lld %8.2f%%\n", name(i).c_str(), shape.str().c_str(),
                  static_cast<long long>(nz), static_cast<long long>(w.numel()),
                  100.0 * (1.0 - double(nz) / double(w.numel())));
    os << line;
  }
  std::snprintf(line, sizeof line, "%-24s %-18s %12lld %12lld %8.2f%%\n", "total", "",
                static_cast<long long>(nonzeros()), static_cast<long long>(numel()), 100.0 * sparsity());
  os << line;
  return os.str();
}

}  // namespace weft::prune
