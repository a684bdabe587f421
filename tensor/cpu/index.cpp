// gather / scatter_add and index_select / index_add: picking entries by index, and the
// adjoint that puts gradients back where they were picked from.
//
// On a GPU (cuda/kernels/index.cu) the indices are not range-checked: that would mean
// reading them back to the host. Out-of-range entries read 0 and add nothing there.
#include "../views.h"
#include "../backend.h"
#include "../raw.h"
#include "loops.h"

namespace weft::raw {

namespace {

// `t` is the indexed tensor: the index must live on its device.
void check_index(const char* op, const Tensor& index, const Tensor& t) {
  cpu::check_defined(op, t);
  WEFT_CHECK(index.defined() && index.dtype() == kInt64, op, ": the index must be an int64 tensor, got ",
             index.defined() ? dtype_name(index.dtype()) : "undefined");
  WEFT_CHECK(index.device() == t.device(), op, ": the index is on ", index.device(), ", the tensor on ", t.device());
}

// Checks gather/scatter shapes: same number of dims, index no larger off `dim`.
void check_gather_shapes(const char* op, const Shape& a, int64_t dim, const Shape& index) {
  WEFT_CHECK(a.size() == index.size(), op, ": input ", a, " and index ", index, " must have the same number of dims");
  for (int64_t d = 0; d < a.size(); ++d)
    WEFT_CHECK(d == dim || index[d] <= a[d], op, ": index ", index, " is larger than input ", a, " in dim ", d);
}

// Visits every element of `index` (contiguous) with its multi-index.
template <class F>
void for_each_index(const Shape& shape, F f) {
  std::array<int64_t, kMaxDims> idx{};
  const int64_t n = shape.numel();
  for (int64_t i = 0; i < n; ++i) {
    f(i, idx);
    for (int64_t d = shape.size() - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

int64_t checked(const char* op, int64_t v, int64_t size, int64_t dim) {
  WEFT_CHECK(v >= -size && v < size, op, ": index ", v, " is out of range for dim ", dim, " of size ", size);
  return v < 0 ? v + size : v;
}

}  // namespace

Tensor gather(const Tensor& a, int64_t dim, const Tensor& index_in) {
  check_index("gather", index_in, a);
  const int64_t d = wrap_dim("gather", dim, a.dim());
  check_gather_shapes("gather", a.shape(), d, index_in.shape());
  const Tensor index = contiguous(index_in);
  Tensor out = empty(index.shape(), a.dtype(), a.device());
  if (!a.device().is_cpu()) {
    backend_for(a).gather(out, a, d, index);
    return out;
  }
  const int64_t* ip = index.data<int64_t>();
  dispatch_storage(a.dtype(), [&]<class T>() {  // a move: 16-bit values too, as they are
    const T* src = a.data<T>();
    T* o = out.data<T>();
    for_each_index(index.shape(), [&](int64_t i, const std::array<int64_t, kMaxDims>& idx) {
      int64_t off = 0;
      for (int64_t k = 0; k < a.dim(); ++k)
        off += (k == d ? checked("gather", ip[i], a.shape()[d], d) : idx[k]) * a.strides()[k];
      o[i] = src[off];
    });
  });
  return out;
}

Tensor scatter_add(const Shape& shape, int64_t dim, const Tensor& index_in, const Tensor& src_in) {
  check_index("scatter_add", index_in, src_in);
  const int64_t d = wrap_dim("scatter_add", dim, shape.size());
  check_gather_shapes("scatter_add", shape, d, index_in.shape());
  WEFT_CHECK(index_in.shape() == src_in.shape(), "scatter_add: index ", index_in.shape(), " and source ",
             src_in.shape(), " differ");
  const Tensor index = contiguous(index_in), src = contiguous(src_in);
  Tensor out = empty(shape, src.dtype(), src.device());
  fill_(out, 0);
  if (routed(out)) {
    backend_for(out).scatter_add(out, d, index, src);
    return out;
  }
  const Strides st = out.strides();
  const int64_t* ip = index.data<int64_t>();
  dispatch_numeric(src.dtype(), "scatter_add", [&]<class T>() {
    const T* s = src.data<T>();
    T* o = out.data<T>();
    for_each_index(index.shape(), [&](int64_t i, const std::array<int64_t, kMaxDims>& idx) {
      int64_t off = 0;
      for (int64_t k = 0; k < out.dim(); ++k) off += (k == d ? checked("scatter_add", ip[i], shape[d], d) : idx[k]) * st[k];
      o[off] += s[i];
    });
  });
  return out;
}

Tensor index_select(const Tensor& a_in, int64_t dim, const Tensor& index_in) {
  check_index("index_select", index_in, a_in);
  WEFT_CHECK(index_in.dim() <= 1, "index_select: the index must be 1-D, got shape ", index_in.shape());
  const Tensor a = a_in.detach(), index = views::reshape(contiguous(index_in), {-1});
  const int64_t d = wrap_dim("index_select", dim, a.dim());
  Shape sh = a.shape();
  sh[d] = index.numel();
  Tensor out = empty(sh, a.dtype(), a.device());
  if (!a.device().is_cpu()) {  // (on the CPU a 16-bit table is copied row by row as it is: no widening)
    backend_for(a).index_select(out, a, d, index);
    return out;
  }
  const int64_t* ip = index.data<int64_t>();
  for (int64_t k = 0; k < index.numel(); ++k)
    copy_(views::select(out, d, k), views::select(a, d, checked("index_select", ip[k], a.shape()[d], d)));
  return out;
}

Tensor index_add(const Shape& shape, int64_t dim, const Tensor& index_in, const Tensor& src_in) {
  check_index("index_add", index_in, src_in);
  const Tensor src = src_in.detach(), index = views::reshape(contiguous(index_in), {-1});
  const int64_t d = wrap_dim("index_add", dim, shape.size());
  WEFT_CHECK(src.dim() == shape.size() && src.shape()[d] == index.numel(), "index_add: source ", src.shape(),
             " does not match ", index.numel(), " indices into ", shape, " along dim ", d);
  Tensor out = empty(shape, src.dtype(), src.device());
  fill_(out, 0);
  if (routed(out)) {
    backend_for(out).index_add(out, d, index, src);
    return out;
  }
  const int64_t* ip = index.data<int64_t>();
  for (int64_t k = 0; k < index.numel(); ++k)
    binary_(Binary::Add, views::select(out, d, checked("index_add", ip[k], shape[d], d)), views::select(src, d, k));
  return out;
}

}  // namespace weft::raw
