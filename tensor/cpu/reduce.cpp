// Reductions: sum, mean, max, min over any set of dims, and argmax/argmin over one.
//
// The general path permutes the kept dims to the front and the reduced dims to the back,
// so every output element reduces one contiguous row. Two common patterns skip the
// permuted copy: summing over *leading* dims (the bias gradient of a Linear: (N,C) -> (C))
// adds whole rows, and summing around one block of kept dims (the bias gradient of a
// convolution: (N,K,H,W) -> (K)) sums each kept index's rows where they lie.
#include <algorithm>
#include <cmath>
#include <limits>

#include "../views.h"
#include "../backend.h"
#include "../raw.h"
#include "loops.h"
#include "sum.h"

namespace weft::raw {

namespace {

using cpu::acc_t;
using cpu::sum_contiguous;

const char* reduce_name(Reduce op) {
  switch (op) {
    case Reduce::Sum: return "sum";
    case Reduce::Mean: return "mean";
    case Reduce::Max: return "max";
    case Reduce::Min: return "min";
  }
  return "reduce";
}

// Which dims are reduced; empty `dims` means all of them.
std::array<bool, kMaxDims> reduced_mask(const char* op, const Tensor& a, const Shape& dims) {
  std::array<bool, kMaxDims> mask{};
  if (dims.size() == 0) {
    for (int64_t d = 0; d < a.dim(); ++d) mask[d] = true;
    return mask;
  }
  for (int64_t d : dims) {
    const int64_t w = wrap_dim(op, d, a.dim());
    WEFT_CHECK(!mask[w], op, ": dim ", w, " appears twice in ", dims);
    mask[w] = true;
  }
  return mask;
}

Shape output_shape(const Tensor& a, const std::array<bool, kMaxDims>& mask, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < a.dim(); ++d) {
    if (!mask[d]) out.push_back(a.shape()[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

// a permuted to (kept..., reduced...) and made contiguous, so rows are reduction groups.
Tensor rows_view(const Tensor& a, const std::array<bool, kMaxDims>& mask) {
  Shape perm;
  for (int64_t d = 0; d < a.dim(); ++d)
    if (!mask[d]) perm.push_back(d);
  for (int64_t d = 0; d < a.dim(); ++d)
    if (mask[d]) perm.push_back(d);
  return contiguous(views::permute(a, perm));
}


template <class T>
T reduce_row(Reduce op, const T* p, int64_t n) {
  switch (op) {
    case Reduce::Sum:
    case Reduce::Mean: {
      const acc_t<T> s = sum_contiguous(p, n);
      return static_cast<T>(op == Reduce::Mean ? s / static_cast<acc_t<T>>(n) : s);
    }
    case Reduce::Max:
    case Reduce::Min: {
      T best = p[0];
      for (int64_t i = 1; i < n; ++i) {
        const T v = p[i];
        if (v != v) return v;  // NaN propagates
        if (op == Reduce::Max ? v > best : v < best) best = v;
      }
      return best;
    }
  }
  return T(0);
}

// Sum/mean over the first `lead` dims of a contiguous tensor: out[j] = sum_i a[i][j].
template <class T>
void reduce_leading(Reduce op, const T* p, int64_t outer, int64_t inner, T* out) {
  parallel_for(0, inner, std::max<int64_t>(1, cpu::kElementwiseGrain / std::max<int64_t>(outer, 1)), [&](int64_t b, int64_t e) {
    std::vector<acc_t<T>> acc(e - b, acc_t<T>(0));
    for (int64_t i = 0; i < outer; ++i) {
      const T* row = p + i * inner;
      for (int64_t j = b; j < e; ++j) acc[j - b] += row[j];
    }
    for (int64_t j = b; j < e; ++j)
      out[j] = static_cast<T>(op == Reduce::Mean ? acc[j - b] / static_cast<acc_t<T>>(outer) : acc[j - b]);
  });
}

// Sum/mean of a contiguous tensor viewed as (outer, mid, inner) over outer and inner:
// out[m] = sum_o sum_i a[o][m][i]. The bias gradient of a convolution, (N,K,H,W) ->
// (K), is this shape; reading the rows where they lie avoids permuting a copy.
template <class T>
void reduce_outer_inner(Reduce op, const T* p, int64_t outer, int64_t mid, int64_t inner, T* out) {
  parallel_for(0, mid, std::max<int64_t>(1, cpu::kElementwiseGrain / std::max<int64_t>(outer * inner, 1)),
               [&](int64_t b, int64_t e) {
                 for (int64_t m = b; m < e; ++m) {
                   acc_t<T> s = 0;
                   for (int64_t o = 0; o < outer; ++o) s += sum_contiguous(p + (o * mid + m) * inner, inner);
                   out[m] = static_cast<T>(op == Reduce::Mean ? s / static_cast<acc_t<T>>(outer * inner) : s);
                 }
               });
}

// When the kept dims are one contiguous block between reduced ones, the sizes of the
// (outer, mid, inner) view reduce_outer_inner takes; {0,0,0} otherwise.
std::array<int64_t, 3> outer_mid_inner(const Tensor& a, const std::array<bool, kMaxDims>& mask) {
  int64_t d = 0, outer = 1, mid = 1, inner = 1;
  for (; d < a.dim() && mask[d]; ++d) outer *= a.shape()[d];
  for (; d < a.dim() && !mask[d]; ++d) mid *= a.shape()[d];
  for (; d < a.dim() && mask[d]; ++d) inner *= a.shape()[d];
  if (d < a.dim()) return {0, 0, 0};  // kept dims in two or more blocks
  return {outer, mid, inner};
}

// The GPU path: the kernels take the output with keepdim's shape and the sorted dims.
Tensor keepdim_view(const Tensor& out, const Tensor& a, const std::array<bool, kMaxDims>& mask) {
  const Shape shape = output_shape(a, mask, /*keepdim=*/true);
  return make_tensor(out.storage(), shape, contiguous_strides(shape), out.offset(), out.dtype());
}

Shape mask_dims(const Tensor& a, const std::array<bool, kMaxDims>& mask) {
  Shape dims;
  for (int64_t d = 0; d < a.dim(); ++d)
    if (mask[d]) dims.push_back(d);
  return dims;
}

}  // namespace

Tensor reduce(Reduce op, const Tensor& a, const Shape& dims, bool keepdim) {
  const char* name = reduce_name(op);
  cpu::check_defined(name, a);
  // A bool sum counts the true entries, in int64, as PyTorch's does.
  if (a.dtype() == kBool && op == Reduce::Sum) return reduce(op, to_dtype(a, kInt64), dims, keepdim);
  const auto mask = reduced_mask(name, a, dims);
  Shape out_shape = output_shape(a, mask, keepdim);
  Tensor out = empty(out_shape, a.dtype(), a.device());
  const int64_t inner_n = a.numel() / std::max<int64_t>(out.numel(), 1);
  if (a.numel() == 0 || inner_n == 0) {
    WEFT_CHECK(op == Reduce::Sum || op == Reduce::Mean || (a.numel() == 0 && out.numel() == 0), name,
               ": cannot reduce an empty tensor of shape ", a.shape(), " (no identity for ", name, ")");
    fill_(out, op == Reduce::Mean ? std::nan("") : 0.0);
    return out;
  }
  if (routed(a)) {
    backend_for(a).reduce(op, keepdim_view(out, a, mask), a, mask_dims(a, mask));
    return out;
  }
  // The reduced dims are a leading block: add whole rows (bias gradients, batch means).
  int64_t lead = 0;
  while (lead < a.dim() && mask[lead]) ++lead;
  bool leading_only = lead > 0 && a.is_contiguous() && (op == Reduce::Sum || op == Reduce::Mean);
  for (int64_t d = lead; d < a.dim() && leading_only; ++d) leading_only = !mask[d];
  // Plain copies, not structured bindings: clang < 16 cannot capture those in a lambda.
  const auto omi = outer_mid_inner(a, mask);
  const int64_t outer = omi[0], mid = omi[1], inner = omi[2];
  const bool outer_inner = !leading_only && outer > 0 && inner > 1 && a.is_contiguous() &&
                           (op == Reduce::Sum || op == Reduce::Mean);
  dispatch_numeric(a.dtype(), name, [&]<class T>() {
    T* o = out.data<T>();
    if (leading_only) {
      reduce_leading<T>(op, a.data<T>(), inner_n, out.numel(), o);
      return;
    }
    if (outer_inner) {
      reduce_outer_inner<T>(op, a.data<T>(), outer, mid, inner, o);
      return;
    }
    Tensor rows = rows_view(a, mask);
    const T* p = rows.data<T>();
    parallel_for(0, out.numel(), std::max<int64_t>(1, cpu::kElementwiseGrain / inner_n), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) o[i] = reduce_row<T>(op, p + i * inner_n, inner_n);
    });
  });
  return out;
}

Tensor argreduce(bool is_max, const Tensor& a, int64_t dim, bool keepdim) {
  const char* name = is_max ? "argmax" : "argmin";
  cpu::check_defined(name, a);
  const int64_t d = wrap_dim(name, dim, a.dim());
  std::array<bool, kMaxDims> mask{};
  if (a.dim() > 0) mask[d] = true;
  const int64_t n = a.dim() > 0 ? a.shape()[d] : 1;
  WEFT_CHECK(n > 0, name, ": cannot reduce over dim ", d, " of size 0 in shape ", a.shape());
  Tensor out = empty(output_shape(a, mask, keepdim), kInt64, a.device());
  if (routed(a)) {
    backend_for(a).argreduce(is_max, keepdim_view(out, a, mask), a, d);
    return out;
  }
  Tensor rows = rows_view(a, mask);
  dispatch_numeric(a.dtype(), name, [&]<class T>() {
    const T* p = rows.data<T>();
    int64_t* o = out.data<int64_t>();
    parallel_for(0, out.numel(), std::max<int64_t>(1, cpu::kElementwiseGrain / n), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const T* row = p + i * n;
        int64_t best = 0;
        for (int64_t j = 1; j < n; ++j) {
          if (row[best] != row[best]) break;  // NaN wins, like PyTorch
          if (row[j] != row[j] || (is_max ? row[j] > row[best] : row[j] < row[best])) best = j;
        }
        o[i] = best;
      }
    });
  });
  return out;
}

Tensor sum_to(const Tensor& a, const Shape& shape) {
  if (a.shape() == shape) return a;
  WEFT_CHECK(broadcast_shapes("sum_to", shape, a.shape()) == a.shape(), "sum_to: shape ", shape,
             " does not broadcast to ", a.shape());
  const int64_t lead = a.dim() - shape.size();
  Shape dims;
  for (int64_t d = 0; d < a.dim(); ++d)
    if (d < lead || (shape[d - lead] == 1 && a.shape()[d] != 1)) dims.push_back(d);
  Tensor r = reduce(Reduce::Sum, a, dims, /*keepdim=*/true);
  return views::view(r, shape);
}

}  // namespace weft::raw
