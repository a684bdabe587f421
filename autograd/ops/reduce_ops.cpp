// Reductions and their backward: the gradient of a reduced output is spread back over
// the elements that were reduced.
#include "../../tensor/creation.h"
#include "../functions.h"
#include "../tape.h"

namespace weft {

using autograd::BackwardArgs;
using autograd::needs_recording;
using autograd::record;
using Grads = std::vector<Tensor>;

namespace {

// The reduced dims, wrapped and sorted; all dims when `dims` is empty.
Shape normalized(const char* op, const Tensor& a, const Shape& dims) {
  std::array<bool, kMaxDims> hit{};
  for (int64_t x : dims) {
    const int64_t d = wrap_dim(op, x, a.dim());
    WEFT_CHECK(!hit[d], op, ": dim ", d, " appears twice in ", dims);
    hit[d] = true;
  }
  Shape out;
  for (int64_t d = 0; d < a.dim(); ++d)
    if (dims.size() == 0 || hit[d]) out.push_back(d);
  return out;
}

// Reinserts size-1 dims that keepdim=false removed, so `g` broadcasts against the input.
Tensor unsqueeze_reduced(const Tensor& g, const Shape& dims, bool keepdim) {
  if (keepdim) return g;
  Tensor r = g;
  for (int64_t d : dims) r = r.unsqueeze(d);  // ascending order keeps positions right
  return r;
}

int64_t count(const Tensor& a, const Shape& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= a.shape()[d];
  return n;
}

Tensor extreme(const char* name, raw::Reduce op, const Tensor& a, const Shape& dims_in, bool keepdim) {
  const Shape dims = normalized(name, a, dims_in);
  Tensor out = raw::reduce(op, a, dims, keepdim);
  if (!needs_recording(a)) return out;
  return record(name, out, {a}, {a, out}, [dims, keepdim](const BackwardArgs& g) -> Grads {
    const Tensor &a = g.saved[0], out = unsqueeze_reduced(g.saved[1], dims, keepdim);
    // Every element equal to the extreme gets grad / (number of such elements).
    Tensor mask = raw::to_dtype(raw::compare(raw::Compare::Eq, a, out), a.dtype());
    Tensor ties = raw::reduce(raw::Reduce::Sum, mask, dims, true);
    Tensor share = raw::binary(raw::Binary::Div, unsqueeze_reduced(g.grad, dims, keepdim), ties);
    return {raw::binary(raw::Binary::Mul, mask, share)};
  });
}

}  // namespace

// a (...) -> sum over dims; the backward broadcasts the gradient back.
Tensor sum(const Tensor& a, const Shape& dims_in, bool keepdim) {
  const Shape dims = normalized("sum", a, dims_in);
  Tensor out = raw::reduce(raw::Reduce::Sum, a, dims, keepdim);
  if (!needs_recording(a)) return out;
  return record("sum", out, {a}, {}, [dims, keepdim, in = a.shape()](const BackwardArgs& g) -> Grads {
    return {raw::contiguous(unsqueeze_reduced(g.grad, dims, keepdim).expand(in))};
  });
}

Tensor mean(const Tensor& a, const Shape& dims_in, bool keepdim) {
  const Shape dims = normalized("mean", a, dims_in);
  Tensor out = raw::reduce(raw::Reduce::Mean, a, dims, keepdim);
  if (!needs_recording(a)) return out;
  const double scale = 1.0 / static_cast<double>(std::max<int64_t>(count(a, dims), 1));
  return record("mean", out, {a}, {}, [dims, keepdim, scale, in = a.shape()](const BackwardArgs& g) -> Grads {
    Tensor scaled = raw::binary_scalar(raw::Binary::Mul, g.grad, scale);
    return {raw::contiguous(unsqueeze_reduced(scaled, dims, keepdim).expand(in))};
  });
}

Tensor amax(const Tensor& a, const Shape& dims, bool keepdim) { return extreme("amax", raw::Reduce::Max, a, dims, keepdim); }
Tensor amin(const Tensor& a, const Shape& dims, bool keepdim) { return extreme("amin", raw::Reduce::Min, a, dims, keepdim); }

Tensor Tensor::sum() const { return weft::sum(*this); }
Tensor Tensor::sum(int64_t dim, bool keepdim) const { return weft::sum(*this, {dim}, keepdim); }
Tensor Tensor::sum(const Shape& dims, bool keepdim) const { return weft::sum(*this, dims, keepdim); }
Tensor Tensor::mean() const { return weft::mean(*this); }
Tensor Tensor::mean(int64_t dim, bool keepdim) const { return weft::mean(*this, {dim}, keepdim); }
Tensor Tensor::mean(const Shape& dims, bool keepdim) const { return weft::mean(*this, dims, keepdim); }
Tensor Tensor::max() const { return amax(*this); }
Tensor Tensor::max(int64_t dim, bool keepdim) const { return amax(*this, {dim}, keepdim); }
Tensor Tensor::min() const { return amin(*this); }
Tensor Tensor::min(int64_t dim, bool keepdim) const { return amin(*this, {dim}, keepdim); }
Tensor Tensor::argmax(int64_t dim, bool keepdim) const { return raw::argreduce(true, *this, dim, keepdim); }
Tensor Tensor::argmin(int64_t dim, bool keepdim) const { return raw::argreduce(false, *this, dim, keepdim); }

}  // namespace weft
