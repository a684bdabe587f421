// softmax and log_softmax along one dim, and their backward.
//
// The dim is moved last and made contiguous, so each row is one softmax; rows run in
// parallel. Both subtract the row max first: exp never overflows. On a GPU the kernels
// (cuda/kernels/softmax.cu) work on the dim where it lies: no permuted copy.
#include <cmath>

#include "../views.h"
#include "../backend.h"
#include "../raw.h"
#include "loops.h"
#include "../host_device.h"

namespace weft::raw {

namespace {

// Moves `dim` last; returns the contiguous rows and the permutation to undo it.
struct Rows {
  Tensor t;
  Shape perm;  // perm[i] = source dim of dim i
  int64_t n;   // row length
};

Rows to_rows(const Tensor& a, int64_t dim) {
  Shape perm;
  for (int64_t d = 0; d < a.dim(); ++d)
    if (d != dim) perm.push_back(d);
  perm.push_back(dim);
  Tensor t = contiguous(views::permute(a, perm));
  return {t, perm, a.dim() > 0 ? a.shape()[dim] : 1};
}

Tensor from_rows(const Tensor& rows, const Shape& perm) {
  Shape inverse;
  inverse.resize(perm.size());
  for (int64_t i = 0; i < perm.size(); ++i) inverse[perm[i]] = i;
  return views::permute(rows, inverse);
}

// f(in_row, out_row, n) for every row; in and out are contiguous with rows of length n.
template <class T, class F>
Tensor rowwise(const char* op, const Tensor& a, int64_t dim, bool log, F f) {
  cpu::check_defined(op, a);
  const int64_t d = wrap_dim(op, dim, a.dim());
  if (routed(a)) {
    Tensor out = empty(a.shape(), a.dtype(), a.device());
    backend_for(a).softmax(out, a, d, log);
    return out;
  }
  Rows r = to_rows(a, d);
  Tensor out = empty(r.t.shape(), a.dtype(), a.device());
  const int64_t rows = r.n ? r.t.numel() / r.n : 0;
  const T* in = r.t.data<T>();
  T* o = out.data<T>();
  parallel_for(0, rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(r.n, 1)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) f(in + i * r.n, o + i * r.n, r.n);
  });
  return from_rows(out, r.perm);
}

// 16 partial results, one per lane, so that the compiler vectorises a reduction it may
// not reorder by itself; the order is fixed, so the result does not depend on threads.
template <class F>
float reduce16(const float* x, int64_t n, float init, F op) {
  float acc[16];
  for (float& a : acc) a = init;
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int k = 0; k < 16; ++k) acc[k] = op(acc[k], x[j + k]);
  for (; j < n; ++j) acc[0] = op(acc[0], x[j]);
  float r = init;
  for (float a : acc) r = op(r, a);
  return r;
}

// One row. float: exp_fast (host_device.h) into y, a lane-wise sum, then one scaling
// pass -- what PyTorch's CPU softmax does with its vectorised exp. double: exp in
// double. The max is subtracted first, so exp never overflows, and masked entries
// (-inf, a causal mask) come out exactly 0.
template <class T>
void softmax_row(const T* x, T* y, int64_t n, bool log) {
  if constexpr (std::is_same_v<T, float>) {
    const float mx = reduce16(x, n, -std::numeric_limits<float>::infinity(),
                              [](float a, float b) { return a > b ? a : b; });
    for (int64_t j = 0; j < n; ++j) y[j] = hd::exp_fast(x[j] - mx);
    const float sum = reduce16(y, n, 0.0f, [](float a, float b) { return a + b; });
    if (log) {
      const float log_sum = std::log(sum);
      for (int64_t j = 0; j < n; ++j) y[j] = (x[j] - mx) - log_sum;
    } else {
      const float inv = 1.0f / sum;
      for (int64_t j = 0; j < n; ++j) y[j] *= inv;
    }
    return;
  }
  T mx = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, x[j]);
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += std::exp(double(x[j] - mx));
  if (log) {
    // (x - max) - log(sum), not x - (max + log(sum)): the latter rounds at large max.
    const T log_sum = static_cast<T>(std::log(sum));
    for (int64_t j = 0; j < n; ++j) y[j] = (x[j] - mx) - log_sum;
  } else {
    for (int64_t j = 0; j < n; ++j) y[j] = static_cast<T>(std::exp(double(x[j] - mx)) / sum);
  }
}

// Backward rows need two inputs (grad, out): pack them by running over grad's rows and
// indexing out's rows, which have the same layout after to_rows.
template <class T, class F>
Tensor rowwise2(const char* op, const Tensor& grad, const Tensor& out, int64_t dim, bool log, F f) {
  check_same(op, grad, out);
  WEFT_CHECK(grad.shape() == out.shape(), op, ": gradient ", grad.shape(), " and output ", out.shape(), " differ");
  const int64_t d = wrap_dim(op, dim, out.dim());
  if (routed(out)) {
    Tensor gi = empty(out.shape(), out.dtype(), out.device());
    backend_for(out).softmax_backward(gi, grad, out, d, log);
    return gi;
  }
  Rows rg = to_rows(grad, d), ro = to_rows(out, d);
  Tensor gi = empty(rg.t.shape(), grad.dtype(), grad.device());
  const int64_t rows = rg.n ? rg.t.numel() / rg.n : 0;
  const T *g = rg.t.data<T>(), *y = ro.t.data<T>();
  T* o = gi.data<T>();
  parallel_for(0, rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(rg.n, 1)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) f(g + i * rg.n, y + i * rg.n, o + i * rg.n, rg.n);
  });
  return from_rows(gi, rg.perm);
}

// The dtype whose loops rowwise / rowwise2 instantiate: a's own, or any (float) for a
// routed tensor, which goes to its backend before a loop reads an element.
DType loop_dtype(const Tensor& a) { return a.defined() && routed(a) ? kFloat32 : a.dtype(); }

}  // namespace

Tensor softmax(const Tensor& a, int64_t dim) {
  return dispatch_floating(loop_dtype(a), "softmax", [&]<class T>() {
    return rowwise<T>("softmax", a, dim, false, [](const T* x, T* y, int64_t n) { softmax_row(x, y, n, false); });
  });
}

Tensor log_softmax(const Tensor& a, int64_t dim) {
  return dispatch_floating(loop_dtype(a), "log_softmax", [&]<class T>() {
    return rowwise<T>("log_softmax", a, dim, true, [](const T* x, T* y, int64_t n) { softmax_row(x, y, n, true); });
  });
}

// dx = y * (g - sum(g * y))
Tensor softmax_backward(const Tensor& grad, const Tensor& out, int64_t dim) {
  return dispatch_floating(loop_dtype(out), "softmax_backward", [&]<class T>() {
    return rowwise2<T>("softmax_backward", grad, out, dim, false, [](const T* g, const T* y, T* o, int64_t n) {
      double dot = 0;
      for (int64_t j = 0; j < n; ++j) dot += double(g[j]) * y[j];
      for (int64_t j = 0; j < n; ++j) o[j] = static_cast<T>(y[j] * (g[j] - dot));
    });
  });
}

// dx = g - exp(y) * sum(g)
Tensor log_softmax_backward(const Tensor& grad, const Tensor& out, int64_t dim) {
  return dispatch_floating(loop_dtype(out), "log_softmax_backward", [&]<class T>() {
    return rowwise2<T>("log_softmax_backward", grad, out, dim, true, [](const T* g, const T* y, T* o, int64_t n) {
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += g[j];
      for (int64_t j = 0; j < n; ++j) o[j] = static_cast<T>(g[j] - std::exp(double(y[j])) * s);
    });
  });
}

}  // namespace weft::raw
