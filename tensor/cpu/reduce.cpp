// Reductions: sum, mean, max, min over any set of dims, and argmax/argmin over one.
//
// The general path permutes the kept dims to the front and the reduced dims to the back,
// so every output element reduces one contiguous row. Summing over *leading* dims (the
// bias gradient: (N,C) -> (C)) takes a faster path that adds whole rows, which vectorises.
#include <cmath>
#include <limits>

#include "../raw.h"
#include "loops.h"

namespace weft::raw {

namespace {

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
  return contiguous(a.detach().permute(perm));
}

template <class T>
using acc_t = std::conditional_t<std::is_floating_point_v<T>, double, T>;

template <class T>
T reduce_row(Reduce op, const T* p, int64_t n) {
  switch (op) {
    case Reduce::Sum:
    case Reduce::Mean: {
      acc_t<T> s = 0;
      for (int64_t i = 0; i < n; ++i) s += p[i];
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

}  // namespace

Tensor reduce(Reduce op, const Tensor& a, const Shape& dims, bool keepdim) {
  const char* name = reduce_name(op);
  check_cpu(name, a);
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
  // The reduced dims are a leading block: add whole rows (bias gradients, batch means).
  int64_t lead = 0;
  while (lead < a.dim() && mask[lead]) ++lead;
  bool leading_only = lead > 0 && a.is_contiguous() && (op == Reduce::Sum || op == Reduce::Mean);
  for (int64_t d = lead; d < a.dim() && leading_only; ++d) leading_only = !mask[d];
  dispatch_numeric(a.dtype(), name, [&]<class T>() {
    T* o = out.data<T>();
    if (leading_only) {
      reduce_leading<T>(op, a.data<T>(), inner_n, out.numel(), o);
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
  check_cpu(name, a);
  const int64_t d = wrap_dim(name, dim, a.dim());
  std::array<bool, kMaxDims> mask{};
  if (a.dim() > 0) mask[d] = true;
  const int64_t n = a.dim() > 0 ? a.shape()[d] : 1;
  WEFT_CHECK(n > 0, name, ": cannot reduce over dim ", d, " of size 0 in shape ", a.shape());
  Tensor out = empty(output_shape(a, mask, keepdim), kInt64, a.device());
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
  return r.detach().view(shape);
}

}  // namespace weft::raw
