// The autograd-facing Tensor methods: requires_grad, grad, hooks, backward.
#include "../tensor/raw.h"
#include "tape.h"

namespace weft {

using autograd::AutogradMeta;

using autograd::meta_of;


bool Tensor::is_leaf() const { return !impl_->autograd || impl_->autograd->producer < 0; }

Tensor& Tensor::requires_grad_(bool on) {
  WEFT_CHECK(defined(), "requires_grad_: the tensor is undefined");
  WEFT_CHECK(is_leaf(), "requires_grad_: only leaf tensors can change requires_grad; this one was computed by an "
                        "op (use detach() to make a leaf)");
  WEFT_CHECK(!on || is_floating(dtype()), "requires_grad_: only floating-point tensors can require grad, this one is ",
             dtype());
  impl_->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return impl_->autograd ? impl_->autograd->grad : Tensor(); }

void Tensor::set_grad(const Tensor& g) {
  if (g.defined())
    WEFT_CHECK(g.shape() == shape(), "set_grad: gradient shape ", g.shape(), " does not match tensor shape ", shape());
  meta_of(*this).grad = g;
}


void Tensor::retain_grad() {
  WEFT_CHECK(requires_grad(), "retain_grad: the tensor does not require grad");
  meta_of(*this).retains_grad = true;
}

int Tensor::register_grad_ready_hook(GradReadyHook hook) {
  WEFT_CHECK(is_leaf() && requires_grad(), "register_grad_ready_hook: hooks go on leaves that require grad");
  AutogradMeta& m = meta_of(*this);
  const int id = m.next_hook_id++;
  m.hooks.emplace_back(id, std::move(hook));
  return id;
}

void Tensor::remove_grad_ready_hook(int id) {
  if (!impl_->autograd) return;
  auto& hooks = impl_->autograd->hooks;
  std::erase_if(hooks, [id](const auto& h) { return h.first == id; });
}

void Tensor::backward() const { autograd::backward(*this); }
void Tensor::backward(const Tensor& grad) const { autograd::backward(*this, grad); }

}  // namespace weft
