// Layer normalisation over the last n elements of each row, fused, on the CPU.
//
//   forward   mean = sum x / n,  var = sum (x - mean)^2 / n  (biased, as PyTorch)
//             rstd = 1 / sqrt(var + eps),  xhat = (x - mean) rstd,  y = xhat w + b
//   backward  gxhat = gy w
//             dx = rstd (gxhat - mean(gxhat) - xhat mean(gxhat xhat))     per row
//             dw = sum over rows gy xhat,  db = sum over rows gy
//
// The composition of mean, sub, mul, add, sqrt and div (nn/normalization.cpp) reads and
// writes the activation about ten times forward and fifteen backward; this reads x once
// for the statistics and once for y, and the backward twice. A transformer applies it
// twice per block. Statistics accumulate in double for float input. Rows run in
// parallel; dw and db run in parallel over columns, each summing its rows in order, so
// the results do not depend on the thread count.
#include <cmath>

#include "../raw.h"
#include "../thread_pool.h"
#include "loops.h"

namespace weft::raw {

namespace {

void check_layer_norm(const char* op, const Tensor& x, int64_t n, const Tensor& w, const Tensor& b) {
  WEFT_CHECK(x.device().is_cpu() && x.is_contiguous() && (x.dtype() == kFloat32 || x.dtype() == kFloat64), op,
             ": needs a contiguous float or double CPU tensor, got ", x.dtype(), " on ", x.device());
  WEFT_CHECK(n > 0 && x.numel() % n == 0, op, ": ", x.shape(), " does not split into rows of ", n);
  for (const Tensor* t : {&w, &b})
    WEFT_CHECK(!t->defined() || (t->numel() == n && t->is_contiguous() && t->dtype() == x.dtype() && t->device() == x.device()),
               op, ": weight and bias must be contiguous ", x.dtype(), " tensors of ", n, " elements on ", x.device());
}

template <class T>
void forward_rows(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows, int64_t n, double eps) {
  parallel_for(0, rows, std::max<int64_t>(1, 4096 / n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * n;
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += xr[j];
      const double mu = s / double(n);
      double ss = 0;
      for (int64_t j = 0; j < n; ++j) ss += (double(xr[j]) - mu) * (double(xr[j]) - mu);
      const T m = T(mu), rs = T(1.0 / std::sqrt(ss / double(n) + eps));
      mean[r] = m, rstd[r] = rs;
      T* yr = y + r * n;
      for (int64_t j = 0; j < n; ++j) {
        const T xh = (xr[j] - m) * rs;
        yr[j] = w ? xh * w[j] + (b ? b[j] : T(0)) : (b ? xh + b[j] : xh);
      }
    }
  });
}

template <class T>
void backward_rows(const T* gy, const T* x, const T* w, const T* mean, const T* rstd, T* gx, int64_t rows, int64_t n) {
  parallel_for(0, rows, std::max<int64_t>(1, 4096 / n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T *g = gy + r * n, *xr = x + r * n;
      const T m = mean[r], rs = rstd[r];
      double sg = 0, sgx = 0;  // sum gxhat, sum gxhat xhat
      for (int64_t j = 0; j < n; ++j) {
        const T gxh = w ? g[j] * w[j] : g[j];
        sg += gxh, sgx += gxh * ((xr[j] - m) * rs);
      }
      const T a = T(sg / double(n)), c = T(sgx / double(n));
      T* o = gx + r * n;
      for (int64_t j = 0; j < n; ++j) {
        const T gxh = w ? g[j] * w[j] : g[j];
        o[j] = rs * (gxh - a - ((xr[j] - m) * rs) * c);
      }
    }
  });
}

// dw[j] = sum_r gy[r][j] xhat[r][j], db[j] = sum_r gy[r][j]; columns in parallel.
template <class T>
void param_grads(const T* gy, const T* x, const T* mean, const T* rstd, T* dw, T* db, int64_t rows, int64_t n) {
  constexpr int64_t kCols = 16;
  parallel_for(0, (n + kCols - 1) / kCols, 1, [&](int64_t c0, int64_t c1) {
    const int64_t j0 = c0 * kCols, j1 = std::min(n, c1 * kCols);
    std::vector<double> sw(size_t(j1 - j0), 0.0), sb(size_t(j1 - j0), 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      const T *g = gy + r * n, *xr = x + r * n;
      const T m = mean[r], rs = rstd[r];
      for (int64_t j = j0; j < j1; ++j) {
        sw[size_t(j - j0)] += double(g[j] * ((xr[j] - m) * rs));
        sb[size_t(j - j0)] += double(g[j]);
      }
    }
    for (int64_t j = j0; j < j1; ++j) {
      if (dw) dw[j] = T(sw[size_t(j - j0)]);
      if (db) db[j] = T(sb[size_t(j - j0)]);
    }
  });
}

}  // namespace

LayerNormOut layer_norm(const Tensor& x, int64_t n, const Tensor& w, const Tensor& b, double eps) {
  check_layer_norm("layer_norm", x, n, w, b);
  const int64_t rows = x.numel() / n;
  LayerNormOut out{empty(x.shape(), x.dtype(), x.device()), empty({rows}, x.dtype(), x.device()),
                   empty({rows}, x.dtype(), x.device())};
  dispatch_floating(x.dtype(), "layer_norm", [&]<class T>() {
    forward_rows<T>(x.data<T>(), w.defined() ? w.data<T>() : nullptr, b.defined() ? b.data<T>() : nullptr,
                    out.y.data<T>(), out.mean.data<T>(), out.rstd.data<T>(), rows, n, eps);
  });
  return out;
}

LayerNormGrads layer_norm_backward(const Tensor& gy, const Tensor& x, int64_t n, const Tensor& w, const Tensor& mean,
                                   const Tensor& rstd, bool want_x, bool want_w, bool want_b) {
  check_layer_norm("layer_norm_backward", x, n, w, Tensor());
  const Tensor g = contiguous(gy);
  WEFT_CHECK(g.shape() == x.shape() && g.dtype() == x.dtype(), "layer_norm_backward: gradient ", g.shape(), " ",
             g.dtype(), " does not match the input ", x.shape(), " ", x.dtype());
  const int64_t rows = x.numel() / n;
  LayerNormGrads out;
  dispatch_floating(x.dtype(), "layer_norm_backward", [&]<class T>() {
    const T *gp = g.data<T>(), *xp = x.data<T>(), *mp = mean.data<T>(), *rp = rstd.data<T>();
    if (want_x) {
      out.dx = empty(x.shape(), x.dtype(), x.device());
      backward_rows<T>(gp, xp, w.defined() ? w.data<T>() : nullptr, mp, rp, out.dx.data<T>(), rows, n);
    }
    if (want_w || want_b) {
      if (want_w) out.dw = empty({n}, x.dtype(), x.device());
      if (want_b) out.db = empty({n}, x.dtype(), x.device());
      param_grads<T>(gp, xp, mp, rp, want_w ? out.dw.data<T>() : nullptr, want_b ? out.db.data<T>() : nullptr, rows, n);
    }
  });
  return out;
}

}  // namespace weft::raw
