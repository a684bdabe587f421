// Views and layout ops: new shape/strides over the same storage, plus their backward.
//
// A view's backward maps the output gradient back to the input's shape: transpose
// transposes it back, expand sums over the broadcast dims, narrow pads it with zeros.
#include <numeric>
#include <optional>

#include "../../tensor/creation.h"
#include "../functions.h"
#include "../tape.h"

namespace weft {

using autograd::BackwardArgs;
using autograd::needs_recording;
using autograd::record;
using Grads = std::vector<Tensor>;

namespace {

Tensor alias(const Tensor& a, const Shape& shape, const Strides& strides, int64_t offset) {
  return make_tensor(a.storage(), shape, strides, offset, a.dtype());
}

// Resolves one -1 in `shape` so that it holds `numel` elements.
Shape infer_shape(const char* op, const Shape& in, Shape shape, int64_t numel) {
  int64_t infer = -1, known = 1;
  for (int64_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      WEFT_CHECK(infer < 0, op, ": only one dimension can be -1, got ", shape);
      infer = i;
    } else {
      WEFT_CHECK(shape[i] >= 0, op, ": invalid size ", shape[i], " in shape ", shape);
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    WEFT_CHECK(known != 0 && numel % known == 0, op, ": cannot reshape ", in, " (", numel, " elements) to ", shape);
    shape[infer] = numel / known;
  }
  WEFT_CHECK(shape.numel() == numel, op, ": cannot reshape ", in, " (", numel, " elements) to ", shape, " (",
             shape.numel(), " elements)");
  return shape;
}

// Strides that make `shape` a view of a tensor with (old_shape, old_strides), when one
// exists: each run of new dims must cover a run of old dims that is contiguous in memory.
// (The same algorithm as PyTorch's computeStride.)
std::optional<Strides> view_strides(const Shape& old_shape, const Strides& old_strides, const Shape& shape) {
  if (old_shape.numel() <= 1 || shape.numel() == 0) return contiguous_strides(shape);
  Strides st;
  st.resize(shape.size());
  int64_t view_d = shape.size() - 1;
  int64_t chunk_base = old_strides.back(), tensor_numel = 1, view_numel = 1;
  for (int64_t d = old_shape.size() - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        st[view_d] = view_numel * chunk_base;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base = old_strides[d - 1];
        tensor_numel = view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return st;
}

// Records a view's backward as "reshape the gradient back to the input's shape".
Tensor record_reshape_like(const char* name, const Tensor& a, const Tensor& out) {
  if (!needs_recording(a)) return out;
  return record(name, out, {a}, {}, [in = a.shape()](const BackwardArgs& g) -> Grads {
    return {g.grad.reshape(in)};
  });
}

}  // namespace

Tensor Tensor::view(const Shape& shape_in) const {
  const Shape shape = infer_shape("view", this->shape(), shape_in, numel());
  auto st = view_strides(this->shape(), strides(), shape);
  WEFT_CHECK(st.has_value(), "view: a tensor of shape ", this->shape(), " and strides ", strides(),
             " cannot be viewed as ", shape, " without a copy; use reshape()");
  return record_reshape_like("view", *this, alias(*this, shape, *st, offset()));
}

Tensor Tensor::reshape(const Shape& shape_in) const {
  const Shape shape = infer_shape("reshape", this->shape(), shape_in, numel());
  if (auto st = view_strides(this->shape(), strides(), shape))
    return record_reshape_like("reshape", *this, alias(*this, shape, *st, offset()));
  return contiguous().view(shape);
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
  WEFT_CHECK(dims.size() == dim(), "permute: ", dims.size(), " dims given for a tensor of shape ", shape());
  Shape sh, st, inverse;
  inverse.resize(dim(), -1);
  for (int64_t i = 0; i < dim(); ++i) {
    const int64_t d = wrap_dim("permute", dims[i], dim());
    WEFT_CHECK(inverse[d] < 0, "permute: dim ", d, " appears twice in ", dims);
    inverse[d] = i;
    sh.push_back(shape()[d]);
    st.push_back(strides()[d]);
  }
  Tensor out = alias(*this, sh, st, offset());
  if (!needs_recording(*this)) return out;
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
  const int64_t d = wrap_dim("slice", dim_in, dim());
  const int64_t n = shape()[d];
  WEFT_CHECK(step >= 1, "slice: step must be >= 1, got ", step);
  // Python-style clamping: negative counts from the end, out of range clamps.
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape sh = shape();
  Strides st = strides();
  sh[d] = (end - start + step - 1) / step;
  st[d] *= step;
  Tensor out = alias(*this, sh, st, offset() + start * strides()[d]);
  if (!needs_recording(*this)) return out;
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

Tensor Tensor::expand(const Shape& shape_in) const {
  WEFT_CHECK(shape_in.size() >= dim(), "expand: cannot expand shape ", shape(), " to fewer dims ", shape_in);
  Shape sh;
  Strides st;
  const int64_t lead = shape_in.size() - dim();
  for (int64_t i = 0; i < shape_in.size(); ++i) {
    const int64_t j = i - lead;
    const int64_t have = j >= 0 ? shape()[j] : 1;
    const int64_t want = shape_in[i] == -1 ? have : shape_in[i];
    WEFT_CHECK(j >= 0 || shape_in[i] != -1, "expand: -1 is not allowed for new leading dims in ", shape_in);
    WEFT_CHECK(have == want || have == 1, "expand: cannot expand shape ", shape(), " to ", shape_in, " (dim ", i,
               ": ", have, " vs ", want, ")");
    sh.push_back(want);
    st.push_back(have == want && j >= 0 ? strides()[j] : 0);
  }
  Tensor out = alias(*this, sh, st, offset());
  if (!needs_recording(*this)) return out;
  return record("expand", out, {*this}, {}, [in = shape()](const BackwardArgs& g) -> Grads { return {raw::sum_to(g.grad, in)}; });
}

Tensor Tensor::squeeze() const {
  Shape sh;
  for (int64_t d : shape())
    if (d != 1) sh.push_back(d);
  return sh == shape() ? *this : reshape(sh);
}

Tensor Tensor::squeeze(int64_t dim_in) const {
  if (dim() == 0) return *this;
  const int64_t d = wrap_dim("squeeze", dim_in, dim());
  if (shape()[d] != 1) return *this;
  Shape sh = shape();
  Strides st = strides();
  sh.erase(d);
  st.erase(d);
  return record_reshape_like("squeeze", *this, alias(*this, sh, st, offset()));
}

Tensor Tensor::unsqueeze(int64_t dim_in) const {
  const int64_t d = wrap_dim("unsqueeze", dim_in, dim() + 1);
  Shape sh = shape();
  Strides st = strides();
  sh.insert(d, 1);
  st.insert(d, d < dim() ? strides()[d] * shape()[d] : 1);
  return record_reshape_like("unsqueeze", *this, alias(*this, sh, st, offset()));
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
