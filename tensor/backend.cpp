#include "backend.h"

#include <array>
#include <atomic>

#include "error.h"
#include "half_backend.h"

namespace weft {

namespace {
// Replacements registered at run time, one slot per DeviceKind (none by default).
constinit std::array<std::atomic<DeviceBackend*>, 2> g_registered{};

std::atomic<DeviceBackend*>& slot(DeviceKind kind) { return g_registered[static_cast<size_t>(kind)]; }
}  // namespace

void DeviceBackend::unsupported(const char* op) const {
  throw Error(detail::str(op, ": the ", name(), " backend does not implement it"));
}

// The defaults: every op a backend leaves out throws naming it.
void DeviceBackend::binary(raw::Binary, const Tensor&, const Tensor&, const Tensor&) { unsupported("binary"); }
void DeviceBackend::binary_scalar(raw::Binary, const Tensor&, const Tensor&, double, bool) {
  unsupported("binary_scalar");
}
void DeviceBackend::unary(raw::Unary, const Tensor&, const Tensor&) { unsupported("unary"); }
void DeviceBackend::compare(raw::Compare, const Tensor&, const Tensor&, const Tensor&) { unsupported("compare"); }
void DeviceBackend::compare_scalar(raw::Compare, const Tensor&, const Tensor&, double) {
  unsupported("compare_scalar");
}
void DeviceBackend::where(const Tensor&, const Tensor&, const Tensor&, const Tensor&) { unsupported("where"); }
void DeviceBackend::axpy(const Tensor&, double, const Tensor&) { unsupported("axpy"); }
void DeviceBackend::activation_backward(raw::Activation, const Tensor&, const Tensor&, const Tensor&) {
  unsupported("activation_backward");
}
void DeviceBackend::input_activation(raw::InputActivation, const raw::ActivationParams&, const Tensor&,
                                     const Tensor&) {
  unsupported("input_activation");
}
void DeviceBackend::input_activation_backward(raw::InputActivation, const raw::ActivationParams&, const Tensor&,
                                              const Tensor&, const Tensor&) {
  unsupported("input_activation_backward");
}
void DeviceBackend::copy(const Tensor&, const Tensor&) { unsupported("copy"); }
void DeviceBackend::fill(const Tensor&, double) { unsupported("fill"); }
void DeviceBackend::reduce(raw::Reduce, const Tensor&, const Tensor&, const Shape&) { unsupported("reduce"); }
void DeviceBackend::argreduce(bool, const Tensor&, const Tensor&, int64_t) { unsupported("argreduce"); }
void DeviceBackend::cumsum(const Tensor&, const Tensor&, int64_t, int64_t, int64_t, bool) { unsupported("cumsum"); }
void DeviceBackend::topk(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t, int64_t, bool) {
  unsupported("topk");
}
void DeviceBackend::softmax(const Tensor&, const Tensor&, int64_t, bool) { unsupported("softmax"); }
void DeviceBackend::softmax_backward(const Tensor&, const Tensor&, const Tensor&, int64_t, bool) {
  unsupported("softmax_backward");
}
void DeviceBackend::cross_entropy(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double) {
  unsupported("cross_entropy");
}
void DeviceBackend::cross_entropy_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double) {
  unsupported("cross_entropy_backward");
}
void DeviceBackend::gather(const Tensor&, const Tensor&, int64_t, const Tensor&) { unsupported("gather"); }
void DeviceBackend::scatter_add(const Tensor&, int64_t, const Tensor&, const Tensor&) { unsupported("scatter_add"); }
void DeviceBackend::index_select(const Tensor&, const Tensor&, int64_t, const Tensor&) { unsupported("index_select"); }
void DeviceBackend::index_add(const Tensor&, int64_t, const Tensor&, const Tensor&) { unsupported("index_add"); }
void DeviceBackend::uniform(const Tensor&, double, double, uint64_t, uint64_t) { unsupported("uniform"); }
void DeviceBackend::normal(const Tensor&, double, double, uint64_t, uint64_t) { unsupported("normal"); }
void DeviceBackend::bernoulli(const Tensor&, double, uint64_t, uint64_t) { unsupported("bernoulli"); }
void DeviceBackend::gemm(const Tensor&, const Tensor&, const Tensor&) { unsupported("gemm"); }
void DeviceBackend::linear(const Tensor&, const Tensor&, const Tensor&, const Tensor&) { unsupported("linear"); }
void DeviceBackend::csr_linear(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                               const Tensor&) {
  unsupported("csr_linear");
}
void DeviceBackend::conv2d(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) {
  unsupported("conv2d");
}
void DeviceBackend::conv2d_backward_input(const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) {
  unsupported("conv2d_backward_input");
}
void DeviceBackend::conv2d_backward_weight(const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) {
  unsupported("conv2d_backward_weight");
}
void DeviceBackend::max_pool2d(const Tensor&, const Tensor&, const Pool2dParams&) { unsupported("max_pool2d"); }
void DeviceBackend::max_pool2d_indices(const Tensor&, const Tensor&, const Pool2dParams&) {
  unsupported("max_pool2d_indices");
}
void DeviceBackend::max_pool2d_backward(const Tensor&, const Tensor&, const Tensor&, const Pool2dParams&) {
  unsupported("max_pool2d_backward");
}
void DeviceBackend::avg_pool2d(const Tensor&, const Tensor&, const Pool2dParams&) { unsupported("avg_pool2d"); }
void DeviceBackend::avg_pool2d_backward(const Tensor&, const Tensor&, const Pool2dParams&) {
  unsupported("avg_pool2d_backward");
}
void DeviceBackend::sgd_step(const std::vector<Tensor>&, const std::vector<Tensor>&, const std::vector<Tensor>&,
                             const raw::SgdHyper&) {
  unsupported("sgd_step");
}
void DeviceBackend::adam_step(const std::vector<Tensor>&, const std::vector<Tensor>&, const std::vector<Tensor>&,
                              const std::vector<Tensor>&, const raw::AdamHyper&) {
  unsupported("adam_step");
}

DeviceBackend* register_backend(DeviceKind kind, DeviceBackend* b) {
  WEFT_CHECK(kind != DeviceKind::CPU, "register_backend: the CPU kernels are tensor/'s own, not a backend");
  return slot(kind).exchange(b, std::memory_order_acq_rel);
}

DeviceBackend& backend(Device d) {
  if (DeviceBackend* b = slot(d.kind).load(std::memory_order_acquire)) return *b;
  if (d.is_cuda())
    if (DeviceBackend* b = cuda::builtin_backend()) return *b;
  throw Error(detail::str("weft was built without CUDA (no backend for ", d, ")"));
}

bool routed(const Tensor& t) { return !t.device().is_cpu() || is_half(t.dtype()); }

DeviceBackend& backend_for(const Tensor& t) { return is_half(t.dtype()) ? half_backend() : backend(t.device()); }

}  // namespace weft
