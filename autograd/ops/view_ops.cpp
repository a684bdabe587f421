// Views and layout ops: new shape/strides over the same storage, plus their backward.
// The stride arithmetic itself is tensor/views.h's; this file records it on the tape.
//
// A view's backward maps the output gradient back to the input's shape: transpose
// transposes it back, expand sums over the broadcast dims, narrow pads it with zeros.
#include <numeric>
#include <optional>

#include "../../tensor/creation.h"
#include "../../tensor/views.h"
#include "../functions.h"
#include "../tape.h"

namespace weft {

using autograd::BackwardArgs;
using autograd::needs_recording;
using autograd::record;
using Grads = std::vector<Tensor>;

namespace {

using views::alias;

// Records a view's backward as "reshape the gradient back to the input's shape".
Tensor record_reshape_like(const char* name, const Tensor& a, const Tensor& out) {
  if (!needs_recording(a)) return out;
  return record(name, out, {a}, {}, [in = a.shape()](const BackwardArgs& g) -> Grads {
    return {g.grad.reshape(in)};
  });
}

}  // namespace

Tensor Tensor::view(const Shape& shape) const { return record_reshape_like("view", *this, views::view(*this, shape)); }

Tensor Tensor::reshape(const Shape& shape_in) const {
  const Shape shape = views::infer_shape("reshape", this->shape(), shape_in, numel());
  if (auto st = views::view_strides(this->shape(), strides(), shape))
    return record_reshape_like("reshape", *this, alias(*this, shape, *st, offset()));
  return contiguous().view(shape);  // the copy is recorded too (clone)
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  const int64_t s = wrap_dim("flatten", start_dim, dim()), e = wrap_dim("flatten", end_dim, dim());
  WEFT_CHECK(s <= e, "flatten: start_dim ", start_dim, " comes after end_dim ", end_dim, " for shape ", shape());
  Shape out;
  for (int64_t i = 0; i < s; ++i) out.push_back(shape()[i]);
  int64_t n = 1;
  for (int64_t i = s; i <= e; ++i) n *= shape()[i];
  out.push_back(n);
  for (int64_t i = e + 1; i < dim(); ++i) out.push_back(shape()[i]);
  return reshape(out);
}

Tensor Tensor::permute(const Shape& dims) const {
  Tensor out = views::permute(*this, dims);
  if (!needs_recording(*this)) return out;
  Shape inverse;
  inverse.resize(dim(), 0);
  for (int64_t i = 0; i < dim(); ++i) inverse[wrap_dim("permute", dims[i], dim())] = i;
  return record("permute", out, {*this}, {}, [inverse](const BackwardArgs& g) -> Grads { return {g.grad.permute(inverse)}; });
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  if (dim() == 0) return *this;
  Shape dims;
  for (int64_t i = 0; i < dim(); ++i) dims.push_back(i);
  std::swap(dims[wrap_dim("transpose", d0, dim())], dims[wrap_dim("transpose", d1, dim())]);
  return permute(dims);
}

Tensor Tensor::t() const {
  WEFT_CHECK(dim() <= 2, "t: expects a tensor with at most 2 dims, got shape ", shape());
  return dim() < 2 ? *this : transpose(0, 1);
}

Tensor Tensor::slice(int64_t dim_in, int64_t start, int64_t end, int64_t step) const {
  Tensor out = views::slice(*this, dim_in, start, end, step);
  if (!needs_recording(*this)) return out;
  // The backward slices a zero gradient of the input's shape the same way (the clamping
  // of start and end comes out the same on the same shape).
  const int64_t d = wrap_dim("slice", dim_in, dim());
  return record("slice", out, {*this}, {}, [in = shape(), d, start, end, step](const BackwardArgs& g) -> Grads {
    Tensor gi = zeros(in, {.dtype = g.grad.dtype(), .device = g.grad.device()});
    raw::copy_(gi.slice(d, start, end, step), g.grad);
    return {gi};
  });
}

Tensor Tensor::narrow(int64_t dim_in, int64_t start, int64_t length) const {
  const int64_t d = wrap_dim("narrow", dim_in, dim());
  if (start < 0) start += shape()[d];
  WEFT_CHECK(start >= 0 && length >= 0 && start + length <= shape()[d], "narrow: start ", start, " length ", length,
             " is out of range for dim ", d, " of shape ", shape());
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t dim_in, int64_t index) const {
  const int64_t d = wrap_dim("select", dim_in, dim());
  WEFT_CHECK(dim() > 0, "select: cannot index a 0-d tensor");
  const int64_t n = shape()[d];
  WEFT_CHECK(index >= -n && index < n, "select: index ", index, " is out of range for dim ", d, " of shape ", shape());
  if (index < 0) index += n;
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& shape) const {
  Tensor out = views::expand(*this, shape);
  if (!needs_recording(*this)) return out;
  return record("expand", out, {*this}, {}, [in = this->shape()](const BackwardArgs& g) -> Grads { return {raw::sum_to(g.grad, in)}; });
}

Tensor Tensor::squeeze() const {
  Shape sh;
  for (int64_t d : shape())
    if (d != 1) sh.push_back(d);
  return sh == shape() ? *this : reshape(sh);
}

Tensor Tensor::squeeze(int64_t dim_in) const {
  if (dim() == 0 || shape()[wrap_dim("squeeze", dim_in, dim())] != 1) return *this;
  return record_reshape_like("squeeze", *this, views::squeeze(*this, dim_in));
}

Tensor Tensor::unsqueeze(int64_t dim_in) const {
  return record_reshape_like("unsqueeze", *this, views::unsqueeze(*this, dim_in));
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::clone() const {
  Tensor out = raw::clone(*this);
  if (!needs_recording(*this)) return out;
  return record("clone", out, {*this}, {}, [](const BackwardArgs& g) -> Grads { return {g.grad}; });
}

Tensor Tensor::to(Device device) const {
  Tensor out = raw::to_device(*this, device);
  if (out.is_same(*this) || !needs_recording(*this)) return out;
  return record("to_device", out, {*this}, {}, [from = this->device()](const BackwardArgs& g) -> Grads {
    return {raw::to_device(g.grad, from)};
  });
}

Tensor Tensor::to(DType dtype) const {
  Tensor out = raw::to_dtype(*this, dtype);
  if (out.is_same(*this) || !is_floating(dtype) || !needs_recording(*this)) return out;
  return record("to_dtype", out, {*this}, {}, [from = this->dtype()](const BackwardArgs& g) -> Grads {
    return {raw::to_dtype(g.grad, from)};
  });
}

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim_in) {
  WEFT_CHECK(!tensors.empty(), "cat: needs at least one tensor");
  const Tensor& first = tensors[0];
  const int64_t d = wrap_dim("cat", dim_in, first.dim());
  Shape sh = first.shape();
  int64_t total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    raw::check_same("cat", first, t);
    bool ok = t.dim() == first.dim();
    for (int64_t k = 0; ok && k < t.dim(); ++k) ok = k == d || t.shape()[k] == sh[k];
    WEFT_CHECK(ok, "cat: tensor ", i, " has shape ", t.shape(), ", which does not match ", first.shape(),
               " outside dim ", d);
    total += t.shape()[d];
  }
  sh[d] = total;
  Tensor out = empty(sh, first.dtype(), first.device());
  std::vector<int64_t> sizes;
  int64_t at = 0;
  for (const Tensor& t : tensors) {
    raw::copy_(out.detach().narrow(d, at, t.shape()[d]), t);
    at += t.shape()[d];
    sizes.push_back(t.shape()[d]);
  }
  bool any = false;
  for (const Tensor& t : tensors) any = any || needs_recording(t);
  if (!any) return out;
  return autograd::record("cat", out, std::span<const Tensor>(tensors), {}, [d, sizes](const BackwardArgs& g) -> Grads {
    Grads gs;
    int64_t at = 0;
    for (int64_t n : sizes) {
      gs.push_back(g.grad.narrow(d, at, n));
      at += n;
    }
    return gs;
  });
}

}  // namespace weft
