// The kernels of a build without CUDA: each throws naming its op. Nothing reaches these
// in practice (no tensor can live on a GPU in such a build), but a call that slips
// through fails clearly instead of linking against nothing.
#include "../tensor/error.h"
#include "kernels.h"

namespace weft::cuda {

namespace {
[[noreturn]] void no_cuda(const char* op) { throw Error(detail::str(op, ": weft was built without CUDA")); }
}  // namespace

void binary(raw::Binary, const Tensor&, const Tensor&, const Tensor&) { no_cuda("binary"); }
void binary_scalar(raw::Binary, const Tensor&, const Tensor&, double, bool) { no_cuda("binary_scalar"); }
void unary(raw::Unary, const Tensor&, const Tensor&) { no_cuda("unary"); }
void compare(raw::Compare, const Tensor&, const Tensor&, const Tensor&) { no_cuda("compare"); }
void compare_scalar(raw::Compare, const Tensor&, const Tensor&, double) { no_cuda("compare_scalar"); }
void where(const Tensor&, const Tensor&, const Tensor&, const Tensor&) { no_cuda("where"); }
void axpy(const Tensor&, double, const Tensor&) { no_cuda("axpy_"); }
void activation_backward(Activation, const Tensor&, const Tensor&, const Tensor&) { no_cuda("activation_backward"); }

void copy(const Tensor&, const Tensor&) { no_cuda("copy_"); }
void fill(const Tensor&, double) { no_cuda("fill_"); }

void reduce(raw::Reduce, const Tensor&, const Tensor&, const Shape&) { no_cuda("reduce"); }
void argreduce(bool, const Tensor&, const Tensor&, int64_t) { no_cuda("argreduce"); }

void softmax(const Tensor&, const Tensor&, int64_t, bool) { no_cuda("softmax"); }
void softmax_backward(const Tensor&, const Tensor&, const Tensor&, int64_t, bool) { no_cuda("softmax_backward"); }
void cross_entropy(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double) { no_cuda("cross_entropy"); }
void cross_entropy_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double) {
  no_cuda("cross_entropy_backward");
}

void gather(const Tensor&, const Tensor&, int64_t, const Tensor&) { no_cuda("gather"); }
void scatter_add(const Tensor&, int64_t, const Tensor&, const Tensor&) { no_cuda("scatter_add"); }
void index_select(const Tensor&, const Tensor&, int64_t, const Tensor&) { no_cuda("index_select"); }
void index_add(const Tensor&, int64_t, const Tensor&, const Tensor&) { no_cuda("index_add"); }

void uniform(const Tensor&, double, double, uint64_t, uint64_t) { no_cuda("uniform_"); }
void normal(const Tensor&, double, double, uint64_t, uint64_t) { no_cuda("normal_"); }
void bernoulli(const Tensor&, double, uint64_t, uint64_t) { no_cuda("bernoulli_"); }

}  // namespace weft::cuda
