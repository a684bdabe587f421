// Scans and selection along one dim: cumsum and topk.
//
// Both view the input, made contiguous, as (outer, n, inner) with n the size of the
// chosen dim, and work one (outer, inner) line at a time: a line is n elements `inner`
// apart. The GPU twins (cuda/kernels/scan.cu) walk the same lines in the same order,
// so results match bit for bit: floats add in double along a line in both.
#include <algorithm>
#include <numeric>
#include <vector>

#include "../backend.h"
#include "../raw.h"
#include "loops.h"

namespace weft::raw {

namespace {

struct Lines {
  int64_t outer = 1, n = 1, inner = 1;
};

Lines lines_of(const Shape& s, int64_t d) {
  Lines l;
  if (s.size() == 0) return l;  // a 0-d tensor is one line of one element
  for (int64_t k = 0; k < d; ++k) l.outer *= s[k];
  l.n = s[d];
  for (int64_t k = d + 1; k < s.size(); ++k) l.inner *= s[k];
  return l;
}

// Whether (a, at index ia) comes before (b, at ib) in topk's order: largest (or smallest)
// first, NaN counting as larger than everything, ties going to the lower index.
template <class T>
bool better(T a, int64_t ia, T b, int64_t ib, bool largest) {
  const bool an = a != a, bn = b != b;
  if (an != bn) return largest ? an : bn;
  if (!an && a != b) return largest ? a > b : a < b;
  return ia < ib;
}

}  // namespace

// a (..., n, ...) -> out, a's shape: out[j] = a[0] + ... + a[j] along dim.
Tensor cumsum(const Tensor& a_in, int64_t dim, bool reverse) {
  cpu::check_defined("cumsum", a_in);
  const int64_t d = wrap_dim("cumsum", dim, a_in.dim());  // a 0-d tensor is one line of one
  Tensor a = contiguous(a_in.dtype() == kBool ? to_dtype(a_in, kInt64) : a_in);
  Tensor out = empty(a.shape(), a.dtype(), a.device());
  if (a.numel() == 0) return out;
  const Lines l = lines_of(a.shape(), d);
  if (routed(a)) {
    backend_for(a).cumsum(out, a, l.outer, l.n, l.inner, reverse);
    return out;
  }
  dispatch_numeric(a.dtype(), "cumsum", [&]<class T>() {
    using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;
    const T* p = a.data<T>();
    T* o = out.data<T>();
    parallel_for(0, l.outer * l.inner, std::max<int64_t>(1, cpu::kElementwiseGrain / l.n), [&](int64_t b, int64_t e) {
      for (int64_t line = b; line < e; ++line) {
        const int64_t base = (line / l.inner) * l.n * l.inner + line % l.inner;
        Acc acc = 0;
        for (int64_t j = 0; j < l.n; ++j) {
          const int64_t at = base + (reverse ? l.n - 1 - j : j) * l.inner;
          acc += static_cast<Acc>(p[at]);
          o[at] = static_cast<T>(acc);
        }
      }
    });
  });
  return out;
}

std::pair<Tensor, Tensor> topk(const Tensor& a_in, int64_t k, int64_t dim, bool largest) {
  cpu::check_defined("topk", a_in);
  const int64_t d = wrap_dim("topk", dim, a_in.dim());
  const int64_t size = a_in.dim() == 0 ? 1 : a_in.shape()[d];
  WEFT_CHECK(k >= 0 && k <= size, "topk: k ", k, " is out of range for dim ", d, " of size ", size, " in shape ",
             a_in.shape());
  // A 0-d result has one element whatever k is, so k = 0 would leave it unwritten
  // (PyTorch returns the input there, a quirk weft does not copy).
  WEFT_CHECK(a_in.dim() > 0 || k == 1, "topk: a 0-d tensor takes k = 1, got k = ", k);
  WEFT_CHECK(a_in.dtype() != kBool, "topk: not supported for bool tensors");
  Tensor a = contiguous(a_in);
  Shape sh = a.shape();
  if (sh.size() > 0) sh[d] = k;
  Tensor values = empty(sh, a.dtype(), a.device()), indices = empty(sh, kInt64, a.device());
  const Lines l = lines_of(a.shape(), d);
  if (values.numel() == 0) return {values, indices};
  if (routed(a)) {
    backend_for(a).topk(values, indices, a, l.outer, l.n, l.inner, k, largest);
    return {values, indices};
  }
  dispatch_numeric(a.dtype(), "topk", [&]<class T>() {
    const T* p = a.data<T>();
    T* v = values.data<T>();
    int64_t* ix = indices.data<int64_t>();
    parallel_for(0, l.outer * l.inner, std::max<int64_t>(1, cpu::kElementwiseGrain / l.n), [&](int64_t b, int64_t e) {
      std::vector<int64_t> order(l.n);
      for (int64_t line = b; line < e; ++line) {
        const int64_t o = line / l.inner, i = line % l.inner;
        const T* row = p + o * l.n * l.inner + i;  // row[j * inner]
        std::iota(order.begin(), order.end(), int64_t{0});
        std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t x, int64_t y) {
          return better(row[x * l.inner], x, row[y * l.inner], y, largest);
        });
        for (int64_t j = 0; j < k; ++j) {
          const int64_t at = o * k * l.inner + j * l.inner + i;
          v[at] = row[order[j] * l.inner];
          ix[at] = order[j];
        }
      }
    });
  });
  return {values, indices};
}

}  // namespace weft::raw
