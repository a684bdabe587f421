// In-place ops. They are never recorded on the tape, so they refuse to write into a
// tensor that requires grad while grad mode is on (the tape could not know about the
// write). Under NoGradGuard -- optimizer steps, initialisation -- they are fine, and
// they bump the storage version so a tape entry that saved the old value can tell.
#include "../../tensor/raw.h"
#include "../tape.h"

namespace weft {

namespace {
void check_writable(const char* op, const Tensor& t) {
  WEFT_CHECK(t.defined(), op, ": the tensor is undefined");
  WEFT_CHECK(!(autograd::is_grad_enabled() && t.requires_grad()), op, ": in-place write into a tensor of shape ",
             t.shape(), " that requires grad; do it under autograd::NoGradGuard, or use the out-of-place op");
}
}  // namespace

Tensor& Tensor::copy_(const Tensor& src) {
  check_writable("copy_", *this);
  raw::copy_(*this, src);
  return *this;
}

Tensor& Tensor::fill_(double value) {
  check_writable("fill_", *this);
  raw::fill_(*this, value);
  return *this;
}

Tensor& Tensor::zero_() { return fill_(0.0); }

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  check_writable("add_", *this);
  if (alpha == 1.0) raw::binary_(raw::Binary::Add, *this, other);
  else raw::axpy_(*this, alpha, other);
  return *this;
}

Tensor& Tensor::add_(double value) {
  check_writable("add_", *this);
  raw::binary_scalar_(raw::Binary::Add, *this, value);
  return *this;
}

Tensor& Tensor::mul_(const Tensor& other) {
  check_writable("mul_", *this);
  raw::binary_(raw::Binary::Mul, *this, other);
  return *this;
}

Tensor& Tensor::mul_(double value) {
  check_writable("mul_", *this);
  raw::binary_scalar_(raw::Binary::Mul, *this, value);
  return *this;
}

}  // namespace weft
