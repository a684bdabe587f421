#include "module.h"

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <iomanip>
#include <memory>
#include <typeinfo>
#include <map>
#include <ostream>
#include <sstream>

#include "../autograd/tape.h"
#include "../tensor/memory.h"
#include "../tensor/raw.h"

namespace weft::nn {

namespace {
void check_name(const std::string& name) {
  WEFT_CHECK(!name.empty() && name.find('.') == std::string::npos, "register: bad name '", name,
             "' (names are non-empty and have no dots; dots join the tree)");
}

template <class List>
bool has(const List& list, const std::string& name) {
  for (const auto& [n, _] : list)
    if (n == name) return true;
  return false;
}
}  // namespace

// The class's own name, as PyTorch prints it: "ResNet" for a `struct ResNet : Module`
// in any namespace (the compiler's mangled name, demangled, namespaces dropped).
std::string Module::type_name() const {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> full(abi::__cxa_demangle(typeid(*this).name(), nullptr, nullptr, &status),
                                              std::free);
  std::string name = status == 0 && full ? full.get() : typeid(*this).name();
  const size_t template_start = name.find('<');
  const size_t colon = name.rfind("::", template_start);
  return colon == std::string::npos ? name : name.substr(colon + 2);
}

std::string Module::repr() const {
  const std::string name = type_name();
  if (children_.empty()) return name + "()";
  std::ostringstream os;
  os << name << "(\n";
  for (const auto& [name, child] : children_) {
    std::string r = child->repr();
    for (size_t p = r.find('\n'); p != std::string::npos; p = r.find('\n', p + 3)) r.replace(p, 1, "\n  ");
    os << "  (" << name << "): " << r << "\n";
  }
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Module& m) { return os << m.repr(); }

// ---- forward of one tensor or of several -------------------------------------------------

namespace {
// The module whose default forward(x) is waiting on its own forward_many, on this
// thread. When the default forward_many is then reached for that same module, the
// module overrides neither: without this check the two defaults would call each other
// until the stack overflowed.
thread_local const Module* t_forward_waiting = nullptr;

std::string tensors(size_t n) { return std::to_string(n) + (n == 1 ? " tensor" : " tensors"); }
}  // namespace

Tensor Module::forward(const Tensor& x) {
  const Module* outer = std::exchange(t_forward_waiting, this);
  struct Restore {
    const Module* outer;
    ~Restore() { t_forward_waiting = outer; }
  } restore{outer};
  Tensors out = forward_many({x});
  if (out.size() != 1)
    throw TensorCountError(detail::str(type_name(), ": forward(x) returns one tensor, but its forward_many returned ",
                                       tensors(out.size()), "; call forward_many (or module(Tensors{...})) to get them all"));
  return out[0];
}

Tensors Module::forward_many(const Tensors& inputs) {
  WEFT_CHECK(t_forward_waiting != this, type_name(), " overrides neither forward(const Tensor&) nor ",
             "forward_many(const Tensors&); a module must define one of them");
  if (inputs.size() != 1)
    throw TensorCountError(detail::str(type_name(), ": given ", tensors(inputs.size()),
                                       ", but it takes one (it defines forward(const Tensor&) only; override ",
                                       "forward_many(const Tensors&) to take several)"));
  return {forward(inputs[0])};
}

void Module::expect_inputs(const Tensors& inputs, size_t n, const std::string& what) const {
  if (inputs.size() != n)
    throw TensorCountError(detail::str(type_name(), ": takes ", tensors(n), what.empty() ? "" : " ", what,
                                       ", given ", inputs.size()));
}

namespace {

// "1,234,567"
std::string grouped(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// One row of summary(): a module's dotted name and its own parameter count.
struct SummaryRow {
  std::string name;
  const Module* module;
  int64_t own;
};

// Every leaf under `m`, and every module that holds parameters of its own.
void own_parameter_holders(const Module& m, const std::string& prefix, std::vector<SummaryRow>& out) {
  int64_t own = m.num_parameters();
  for (const auto& [name, child] : m.named_children()) own -= child->num_parameters();
  if (own > 0 || m.named_children().empty()) out.push_back({prefix.empty() ? "(model)" : prefix, &m, own});
  for (const auto& [name, child] : m.named_children())
    own_parameter_holders(*child, prefix.empty() ? name : prefix + "." + name, out);
}

}  // namespace

std::string summary(const Module& model) {
  std::vector<SummaryRow> rows;
  own_parameter_holders(model, "", rows);
  size_t width = 5;
  for (const SummaryRow& r : rows) width = std::max(width, r.name.size());
  std::ostringstream os;
  os << std::left << std::setw(int(width)) << "layer" << "  " << std::setw(20) << "type" << std::right
     << std::setw(14) << "parameters" << "\n";
  int64_t total = 0;
  for (const SummaryRow& r : rows) {
    total += r.own;
    os << std::left << std::setw(int(width)) << r.name << "  " << std::setw(20) << r.module->type_name() << std::right
       << std::setw(14) << grouped(r.own) << "\n";
  }
  int64_t bytes = 0;
  for (const Tensor& p : model.parameters()) bytes += p.numel() * int64_t(element_size(p.dtype()));
  os << std::left << std::setw(int(width)) << "total" << "  " << std::setw(20) << "" << std::right << std::setw(14)
     << grouped(total) << "  (" << format_bytes(bytes) << ")\n";
  return os.str();
}

Tensor& Module::register_parameter(const std::string& name, const Tensor& t) {
  check_name(name);
  WEFT_CHECK(!has(params_, name) && !has(buffers_, name), "register_parameter: '", name, "' is already registered");
  params_.emplace_back(name, t.defined() && !t.requires_grad() ? Parameter(t) : t);
  return params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, const Tensor& t) {
  check_name(name);
  WEFT_CHECK(!has(params_, name) && !has(buffers_, name), "register_buffer: '", name, "' is already registered");
  buffers_.emplace_back(name, t);
  return buffers_.back().second;
}

Tensor& Module::add_buffer(const std::string& name, const Tensor& t) {
  WEFT_CHECK(t.defined(), "add_buffer: buffer '", name, "' is undefined");
  for (auto& [n, b] : buffers_)
    if (n == name) {
      WEFT_CHECK(!b.defined(), "add_buffer: '", name, "' is already registered");
      b = t;
      return b;
    }
  return register_buffer(name, t);
}

void Module::remove_buffer(const std::string& name) {
  for (auto& [n, b] : buffers_)
    if (n == name && b.defined()) {
      b = Tensor();
      return;
    }
  throw Error(detail::str("remove_buffer: no buffer '", name, "'"));
}

bool Module::has_buffer(const std::string& name) const {
  for (const auto& [n, b] : buffers_)
    if (n == name && b.defined()) return true;
  return false;
}

Module& Module::submodule(const std::string& path) {
  Module* m = this;
  size_t start = 0;
  while (start < path.size()) {
    const size_t dot = std::min(path.find('.', start), path.size());
    const std::string part = path.substr(start, dot - start);
    Module* next = nullptr;
    for (auto& [n, child] : m->children_)
      if (n == part) next = child.get();
    WEFT_CHECK(next != nullptr, "submodule: no module '", path, "' (no child '", part, "')");
    m = next;
    start = dot + 1;
  }
  return *m;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_name(name);
  WEFT_CHECK(m != nullptr, "register_module: module '", name, "' is null");
  WEFT_CHECK(!has(children_, name), "register_module: '", name, "' is already registered");
  children_.emplace_back(name, std::move(m));
}

void Module::collect(const std::string& prefix, bool recurse, bool buffers, NamedTensors& out) const {
  for (const auto& [name, t] : buffers ? buffers_ : params_)
    if (t.defined()) out.emplace_back(prefix + name, t);
  if (!recurse) return;
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", true, buffers, out);
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  collect("", recurse, false, out);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [_, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors out;
  collect("", recurse, true, out);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const Tensor& p : parameters()) n += p.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  on_train(on);
  for (auto& [_, child] : children_) child->train(on);
}

void Module::zero_grad(bool set_to_none) { autograd::zero_grad(parameters(), set_to_none); }

void Module::to(Device device) {
  auto move = [&](Tensor t) {  // a handle: what it changes, every handle of the tensor sees
    if (!t.defined() || t.device() == device) return;
    Tensor moved = raw::to_device(t, device);
    // Swap the storage under the same TensorImpl, so every handle sees the move.
    TensorImpl* impl = t.impl();
    impl->storage = moved.storage();
    impl->strides = moved.strides();
    impl->offset = moved.offset();
    if (Tensor g = t.grad(); g.defined()) t.set_grad(raw::to_device(g, device));
  };
  for (auto& [_, t] : named_parameters()) move(t);
  for (auto& [_, t] : named_buffers()) move(t);
}

void Module::to(DType dtype) {
  WEFT_CHECK(is_floating(dtype), "Module::to: ", dtype, " is not a floating-point dtype");
  auto convert = [&](Tensor t) {
    if (!t.defined() || !is_floating(t.dtype()) || t.dtype() == dtype) return;
    Tensor converted = raw::to_dtype(t.contiguous(), dtype);
    TensorImpl* impl = t.impl();  // as to(Device): every handle sees the new values
    impl->storage = converted.storage();
    impl->dtype = dtype;
    impl->strides = converted.strides();
    impl->offset = converted.offset();
    if (Tensor g = t.grad(); g.defined()) t.set_grad(raw::to_dtype(g.contiguous(), dtype));
  };
  for (auto& [_, t] : named_parameters()) convert(t);
  for (auto& [_, t] : named_buffers()) convert(t);
}

NamedTensors Module::state_dict() const {
  NamedTensors out = named_parameters();
  for (auto& nb : named_buffers()) out.push_back(nb);
  return out;
}

void Module::load_state_dict(const NamedTensors& state, bool strict) {
  std::map<std::string, Tensor> given(state.begin(), state.end());
  const NamedTensors mine = state_dict();
  std::vector<std::string> missing, unexpected, wrong;
  for (const auto& [name, t] : mine) {
    auto it = given.find(name);
    if (it == given.end()) missing.push_back(name);
    else if (!(it->second.shape() == t.shape()))
      wrong.push_back(detail::str(name, " (checkpoint ", it->second.shape(), ", model ", t.shape(), ")"));
  }
  for (const auto& [name, _] : state)
    if (!has(mine, name)) unexpected.push_back(name);
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  };
  std::string problems;
  if (!wrong.empty()) problems += "wrong shape: " + join(wrong) + "; ";
  if (strict && !missing.empty()) problems += "missing keys: " + join(missing) + "; ";
  if (strict && !unexpected.empty()) problems += "unexpected keys: " + join(unexpected) + "; ";
  WEFT_CHECK(problems.empty(), "load_state_dict: ", problems.substr(0, problems.size() - 2));
  autograd::NoGradGuard no_grad;
  for (const auto& [name, t] : mine) {
    auto it = given.find(name);
    if (it == given.end()) continue;
    Tensor dst = t;
    raw::copy_(dst, it->second.device() == t.device() ? it->second : raw::to_device(it->second, t.device()));
  }
}

namespace {
thread_local bool t_recomputing = false;
}  // namespace

RecomputeGuard::RecomputeGuard() : previous_(t_recomputing) { t_recomputing = true; }
RecomputeGuard::~RecomputeGuard() { t_recomputing = previous_; }
bool is_recomputing() { return t_recomputing; }

}  // namespace weft::nn
