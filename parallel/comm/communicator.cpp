#include "communicator.h"

namespace weft::parallel {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Mean: return "mean";
    case ReduceOp::Max: return "max";
  }
  return "?";
}

std::string tensor_problem(const Tensor& t, Device device) {
  if (!t.defined()) return "the tensor is undefined";
  if (!t.is_contiguous()) return detail::str("the tensor (shape ", t.shape(), ") is not contiguous");
  // Host memory is one: a backend that serves the CPU serves every logical CPU device
  // (cpu:0, cpu:1, ... -- the stages of a pipeline on one host live on those).
  if (device.is_cpu() ? !t.device().is_cpu() : t.device() != device)
    return detail::str("the tensor is on ", t.device(), ", this backend serves ", device.is_cpu() ? "cpu:N" : device.str());
  DType dt = t.dtype();
  if (dt != kFloat32 && dt != kFloat64 && dt != kInt64 && !is_half(dt))
    return detail::str("dtype ", dtype_name(dt), " is not supported (float32, float64, int64, bfloat16, float16)");
  return "";
}

// The default for communicators that cannot make sub-groups (a test's wrapper, say).
std::shared_ptr<Communicator> Communicator::split(int color, int key) {
  throw Error(detail::str("split(", color, ", ", key, "): the ", backend(), " backend cannot make sub-communicators"));
}

}  // namespace weft::parallel
