// ops.h in a build without CUDA: each entry point throws naming the op.
#include "../tensor/error.h"
#include "ops.h"

namespace weft::cuda {

namespace {
[[noreturn]] void no_cuda(const char* op) { throw Error(detail::str(op, ": weft was built without CUDA")); }
}  // namespace

void gemm(const Tensor&, const Tensor&, const Tensor&) { no_cuda("matmul"); }
void linear(const Tensor&, const Tensor&, const Tensor&, const Tensor&) { no_cuda("linear"); }
void csr_linear(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  no_cuda("SparseLinear");
}
void conv2d(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) { no_cuda("conv2d"); }
void conv2d_backward_input(const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) {
  no_cuda("conv2d_backward_input");
}
void conv2d_backward_weight(const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) {
  no_cuda("conv2d_backward_weight");
}
void set_use_cudnn(bool) { no_cuda("cuda::set_use_cudnn"); }
bool use_cudnn() { return false; }
bool built_with_cudnn() { return false; }
void max_pool2d(const Tensor&, const Tensor&, const Pool2dParams&) { no_cuda("max_pool2d"); }
void max_pool2d_indices(const Tensor&, const Tensor&, const Pool2dParams&) { no_cuda("max_pool2d_indices"); }
void max_pool2d_backward(const Tensor&, const Tensor&, const Tensor&, const Pool2dParams&) {
  no_cuda("max_pool2d_backward");
}
void avg_pool2d(const Tensor&, const Tensor&, const Pool2dParams&) { no_cuda("avg_pool2d"); }
void avg_pool2d_backward(const Tensor&, const Tensor&, const Pool2dParams&) { no_cuda("avg_pool2d_backward"); }
void sgd_step(const std::vector<Tensor>&, const std::vector<Tensor>&, const std::vector<Tensor>&, const Tensor&,
              const SgdArgs&) {
  no_cuda("SGD");
}
void adam_step(const std::vector<Tensor>&, const std::vector<Tensor>&, const std::vector<Tensor>&,
               const std::vector<Tensor>&, const Tensor&, const Tensor&, const AdamArgs&) {
  no_cuda("Adam");
}

}  // namespace weft::cuda
