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

// amax/amin (and max()/min() of a whole tensor): every element equal to the extreme
// gets grad / (number of such elements), as PyTorch's amax does. Where the extreme is
// NaN no element equals it, and 0 * (grad / 0) makes the whole gradient NaN (PyTorch's
// amax too); `nan_ties` instead counts the NaNs as the tied extremes, as PyTorch's
// max() and min() of a whole tensor do (evenly_distribute_backward).
Tensor extreme(const char* name, raw::Reduce op, const Tensor& a, const Shape& dims_in, bool keepdim,
               bool nan_ties = false) {
  const Shape dims = normalized(name, a, dims_in);
  Tensor out = raw::reduce(op, a, dims, keepdim);
  if (!needs_recording(a)) return out;
  return record(name, out, {a}, {a, out}, [dims, keepdim, nan_ties](const BackwardArgs& g) -> Grads {
    const Tensor &a = g.saved[0], out = unsqueeze_reduced(g.saved[1], dims, keepdim);
    Tensor hit = raw::compare(raw::Compare::Eq, a, out);  // bool, a's shape
    if (nan_ties)
      hit = raw::where(raw::compare(raw::Compare::Ne, out, out), raw::compare(raw::Compare::Ne, a, a), hit);
    Tensor mask = raw::to_dtype(hit, a.dtype());
    Tensor ties = raw::reduce(raw::Reduce::Sum, mask, dims, true);
    Tensor share = raw::binary(raw::Binary::Div, unsqueeze_reduced(g.grad, dims, keepdim), ties);
    return {raw::binary(raw::Binary::Mul, mask, share)};
  });
}

// a.max(dim) / a.min(dim): the value at argmax / argmin along dim (the first of tied
// extremes, the first NaN), with the whole gradient going to that one index, as
// PyTorch's max(dim).values does. Gathering the value at the index (rather than reducing
// a second time) keeps the value and the index that gets the gradient the same element.
Tensor extreme_at(const char* name, bool is_max, const Tensor& a, int64_t dim_in, bool keepdim) {
  const int64_t dim = wrap_dim(name, dim_in, a.dim());
  WEFT_CHECK(a.shape()[dim] > 0, name, ": cannot reduce over dim ", dim, " of size 0 in shape ", a.shape());
  const Tensor at = raw::argreduce(is_max, a, dim, true);  // int64, a's shape with size 1 at dim
  Tensor out = raw::gather(a, dim, at);
  if (!keepdim) out = out.squeeze(dim);
  if (!needs_recording(a)) return out;
  return record(name, out, {a}, {at}, [dim, keepdim, in = a.shape()](const BackwardArgs& g) -> Grads {
    return {raw::scatter_add(in, dim, g.saved[0], keepdim ? g.grad : g.grad.unsqueeze(dim))};
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
Tensor Tensor::max() const { return extreme("max", raw::Reduce::Max, *this, {}, false, true); }
Tensor Tensor::max(int64_t dim, bool keepdim) const { return extreme_at("max", true, *this, dim, keepdim); }
Tensor Tensor::min() const { return extreme("min", raw::Reduce::Min, *this, {}, false, true); }
Tensor Tensor::min(int64_t dim, bool keepdim) const { return extreme_at("min", false, *this, dim, keepdim); }
Tensor Tensor::argmax(int64_t dim, bool keepdim) const { return raw::argreduce(true, *this, dim, keepdim); }
Tensor Tensor::argmin(int64_t dim, bool keepdim) const { return raw::argreduce(false, *this, dim, keepdim); }

}  // namespace weft
