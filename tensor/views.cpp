// The stride arithmetic of views. See views.h.
#include "views.h"

#include <algorithm>

#include "creation.h"
#include "error.h"
#include "raw.h"

namespace weft::views {

Tensor alias(const Tensor& a, const Shape& shape, const Strides& strides, int64_t offset) {
  return make_tensor(a.storage(), shape, strides, offset, a.dtype());
}

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

Tensor view(const Tensor& a, const Shape& shape_in) {
  const Shape shape = infer_shape("view", a.shape(), shape_in, a.numel());
  auto st = view_strides(a.shape(), a.strides(), shape);
  WEFT_CHECK(st.has_value(), "view: a tensor of shape ", a.shape(), " and strides ", a.strides(),
             " cannot be viewed as ", shape, " without a copy; use reshape()");
  return alias(a, shape, *st, a.offset());
}

Tensor reshape(const Tensor& a, const Shape& shape_in) {
  const Shape shape = infer_shape("reshape", a.shape(), shape_in, a.numel());
  if (auto st = view_strides(a.shape(), a.strides(), shape)) return alias(a, shape, *st, a.offset());
  return view(raw::clone(a), shape);
}

Tensor permute(const Tensor& a, const Shape& dims) {
  WEFT_CHECK(dims.size() == a.dim(), "permute: ", dims.size(), " dims given for a tensor of shape ", a.shape());
  Shape sh, seen;
  Strides st;
  seen.resize(a.dim(), 0);
  for (int64_t i = 0; i < a.dim(); ++i) {
    const int64_t d = wrap_dim("permute", dims[i], a.dim());
    WEFT_CHECK(seen[d] == 0, "permute: dim ", d, " appears twice in ", dims);
    seen[d] = 1;
    sh.push_back(a.shape()[d]);
    st.push_back(a.strides()[d]);
  }
  return alias(a, sh, st, a.offset());
}

Tensor transpose(const Tensor& a, int64_t d0, int64_t d1) {
  if (a.dim() == 0) return alias(a, a.shape(), a.strides(), a.offset());
  Shape dims;
  for (int64_t i = 0; i < a.dim(); ++i) dims.push_back(i);
  std::swap(dims[wrap_dim("transpose", d0, a.dim())], dims[wrap_dim("transpose", d1, a.dim())]);
  return permute(a, dims);
}

Tensor t(const Tensor& a) {
  WEFT_CHECK(a.dim() <= 2, "t: expects a tensor with at most 2 dims, got shape ", a.shape());
  return a.dim() < 2 ? alias(a, a.shape(), a.strides(), a.offset()) : transpose(a, 0, 1);
}

Tensor slice(const Tensor& a, int64_t dim, int64_t start, int64_t end, int64_t step) {
  const int64_t d = wrap_dim("slice", dim, a.dim());
  const int64_t n = a.shape()[d];
  WEFT_CHECK(step >= 1, "slice: step must be >= 1, got ", step);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape sh = a.shape();
  Strides st = a.strides();
  sh[d] = (end - start + step - 1) / step;
  st[d] *= step;
  return alias(a, sh, st, a.offset() + start * a.strides()[d]);
}

Tensor narrow(const Tensor& a, int64_t dim, int64_t start, int64_t length) {
  const int64_t d = wrap_dim("narrow", dim, a.dim());
  if (start < 0) start += a.shape()[d];
  WEFT_CHECK(start >= 0 && length >= 0 && start + length <= a.shape()[d], "narrow: start ", start, " length ", length,
             " is out of range for dim ", d, " of shape ", a.shape());
  return slice(a, d, start, start + length);
}

Tensor select(const Tensor& a, int64_t dim, int64_t index) {
  WEFT_CHECK(a.dim() > 0, "select: cannot index a 0-d tensor");
  const int64_t d = wrap_dim("select", dim, a.dim());
  const int64_t n = a.shape()[d];
  WEFT_CHECK(index >= -n && index < n, "select: index ", index, " is out of range for dim ", d, " of shape ", a.shape());
  if (index < 0) index += n;
  Shape sh = a.shape();
  Strides st = a.strides();
  sh.erase(d);
  st.erase(d);
  return alias(a, sh, st, a.offset() + index * a.strides()[d]);
}

Tensor expand(const Tensor& a, const Shape& shape_in) {
  WEFT_CHECK(shape_in.size() >= a.dim(), "expand: cannot expand shape ", a.shape(), " to fewer dims ", shape_in);
  Shape sh;
  Strides st;
  const int64_t lead = shape_in.size() - a.dim();
  for (int64_t i = 0; i < shape_in.size(); ++i) {
    const int64_t j = i - lead;
    const int64_t have = j >= 0 ? a.shape()[j] : 1;
    const int64_t want = shape_in[i] == -1 ? have : shape_in[i];
    WEFT_CHECK(j >= 0 || shape_in[i] != -1, "expand: -1 is not allowed for new leading dims in ", shape_in);
    WEFT_CHECK(have == want || have == 1, "expand: cannot expand shape ", a.shape(), " to ", shape_in, " (dim ", i,
               ": ", have, " vs ", want, ")");
    sh.push_back(want);
    st.push_back(have == want && j >= 0 ? a.strides()[j] : 0);
  }
  return alias(a, sh, st, a.offset());
}

Tensor squeeze(const Tensor& a, int64_t dim) {
  if (a.dim() == 0) return alias(a, a.shape(), a.strides(), a.offset());
  const int64_t d = wrap_dim("squeeze", dim, a.dim());
  if (a.shape()[d] != 1) return alias(a, a.shape(), a.strides(), a.offset());
  Shape sh = a.shape();
  Strides st = a.strides();
  sh.erase(d);
  st.erase(d);
  return alias(a, sh, st, a.offset());
}

Tensor unsqueeze(const Tensor& a, int64_t dim) {
  const int64_t d = wrap_dim("unsqueeze", dim, a.dim() + 1);
  Shape sh = a.shape();
  Strides st = a.strides();
  sh.insert(d, 1);
  st.insert(d, d < a.dim() ? a.strides()[d] * a.shape()[d] : 1);
  return alias(a, sh, st, a.offset());
}

}  // namespace weft::views
