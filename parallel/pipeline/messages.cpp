#include "messages.h"

namespace weft::parallel::pipeline {

namespace {
// A header: dtype, number of dims, wants_grad, index, count, rows, then up to kMaxDims
// sizes.
constexpr int kMaxDims = 8;
constexpr int64_t kFixed = 6, kHeaderLen = kFixed + kMaxDims;

// The communicators move float32, float64 and int64 (communicator.h): a bool tensor (a
// mask) travels as int64 and is turned back into bool on arrival.
DType on_the_wire(DType dt) { return dt == kBool ? kInt64 : dt; }
}  // namespace

int64_t send_activations(Communicator& comm, const nn::Tensors& ts, const std::vector<bool>& wants_grad, int64_t rows,
                         int dst, int tag, PendingSends& pending) {
  WEFT_CHECK(!ts.empty(), "pipeline: a stage returned no tensors; at least one crosses to the next stage");
  WEFT_CHECK(wants_grad.size() == ts.size(), "pipeline: ", wants_grad.size(), " gradient flags for ", ts.size(),
             " activations");
  int64_t bytes = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const Tensor& t = ts[i];
    WEFT_CHECK(t.dim() <= kMaxDims, "pipeline: activation ", i, " has ", t.dim(), " dims; at most ", kMaxDims,
               " cross");
    std::vector<int64_t> h(kHeaderLen, 0);
    h[0] = static_cast<int64_t>(t.dtype()), h[1] = t.dim(), h[2] = wants_grad[i] ? 1 : 0;
    h[3] = static_cast<int64_t>(i), h[4] = static_cast<int64_t>(ts.size()), h[5] = rows;
    for (int64_t d = 0; d < t.dim(); ++d) h[size_t(kFixed + d)] = t.size(d);
    const Tensor header = tensor(h).to(t.device());
    const Tensor data = t.dtype() == on_the_wire(t.dtype()) ? t : t.to(on_the_wire(t.dtype()));
    pending.emplace_back(comm.isend(header, dst, tag), header);
    pending.emplace_back(comm.isend(data, dst, tag), data);
    bytes += data.numel() * int64_t(element_size(data.dtype()));
  }
  return bytes;
}

Activations receive_activations(Communicator& comm, int src, int tag, Device wire) {
  Activations a;
  for (int64_t i = 0, n = 1; i < n; ++i) {  // n: the count the first header gives
    Tensor header = empty({kHeaderLen}, kInt64, wire);
    comm.recv(header, src, tag);
    const std::vector<int64_t> h = header.to(kCPU).to_vector<int64_t>();
    if (i == 0) n = h[4];
    WEFT_CHECK(h[1] >= 0 && h[1] <= kMaxDims && h[3] == i && h[4] == n && n >= 1 &&
                   (h[2] == 0 || is_floating(static_cast<DType>(h[0]))),
               "pipeline: a corrupt activation header from stage ", src);
    const Shape shape(std::vector<int64_t>(h.begin() + kFixed, h.begin() + kFixed + h[1]));
    const auto dtype = static_cast<DType>(h[0]);
    Tensor t = empty(shape, on_the_wire(dtype), wire);
    comm.recv(t, src, tag);
    a.tensors.push_back(t.dtype() == dtype ? t : t.to(dtype));
    a.wants_grad.push_back(h[2] != 0);
    a.rows = h[5];
  }
  return a;
}

int64_t send_gradients(Communicator& comm, const nn::Tensors& grads, int dst, int tag, PendingSends& pending) {
  int64_t bytes = 0;
  for (const Tensor& g : grads) {
    pending.emplace_back(comm.isend(g, dst, tag), g);
    bytes += g.numel() * int64_t(element_size(g.dtype()));
  }
  return bytes;
}

nn::Tensors receive_gradients(Communicator& comm, const std::vector<std::pair<Shape, DType>>& expected, int src,
                              int tag, Device wire) {
  nn::Tensors grads;
  for (const auto& [shape, dtype] : expected) {
    Tensor g = empty(shape, dtype, wire);
    comm.recv(g, src, tag);
    grads.push_back(g);
  }
  return grads;
}

}  // namespace weft::parallel::pipeline
