// 2-D max and average pooling on the CPU, parallel over the N*C planes.
//
// x is (N,C,H,W), out is (N,C,Ho,Wo) with Ho = (H + 2*pad - dil*(k-1) - 1) / stride + 1
// (floor, like PyTorch's ceil_mode=False). Every plane is pooled on its own, so a plane
// is the unit of parallel work and the backward passes need no locks.
//
// Max pooling treats padding as -infinity (a padded position never wins) and remembers
// where each maximum came from as a flat index h*W + w into the input plane; backward
// routes each output gradient to that one pixel. Average pooling divides by the window
// size including padding (count_include_pad) or by the number of real pixels in it.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../raw.h"
#include "../thread_pool.h"

namespace weft::raw {

namespace {

std::string pair_str(const std::array<int64_t, 2>& a) { return detail::str("(", a[0], ",", a[1], ")"); }

struct PoolGeom {
  int64_t N, C, H, W, Ho, Wo;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
  bool count_include_pad;

  int64_t planes() const { return N * C; }
  // Planes per parallel chunk: enough window work that a chunk is worth a thread.
  int64_t grain() const { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, Ho * Wo * kh * kw)); }
};

// Checks x_shape and the parameters the way PyTorch does, and works out the output size.
PoolGeom pool_geometry(const char* op, const Shape& xs, const Pool2dParams& p) {
  WEFT_CHECK(xs.size() == 4, op, ": input must be 4-D (N,C,H,W), got ", xs);
  WEFT_CHECK(p.kernel[0] >= 1 && p.kernel[1] >= 1, op, ": input ", xs, ": kernel must be >= 1, got ",
             pair_str(p.kernel));
  WEFT_CHECK(p.stride[0] >= 1 && p.stride[1] >= 1, op, ": input ", xs, ": stride must be >= 1, got ",
             pair_str(p.stride));
  WEFT_CHECK(p.dilation[0] >= 1 && p.dilation[1] >= 1, op, ": input ", xs, ": dilation must be >= 1, got ",
             pair_str(p.dilation));
  WEFT_CHECK(p.padding[0] >= 0 && p.padding[1] >= 0, op, ": input ", xs, ": padding must be >= 0, got ",
             pair_str(p.padding));
  // A window more than half padding would mostly pool nothing; PyTorch forbids it too.
  WEFT_CHECK(p.padding[0] <= p.kernel[0] / 2 && p.padding[1] <= p.kernel[1] / 2, op, ": input ", xs, ": padding ",
             pair_str(p.padding), " must be at most half the kernel ", pair_str(p.kernel));
  PoolGeom g{};
  g.N = xs[0], g.C = xs[1], g.H = xs[2], g.W = xs[3];
  g.kh = p.kernel[0], g.kw = p.kernel[1], g.sh = p.stride[0], g.sw = p.stride[1];
  g.ph = p.padding[0], g.pw = p.padding[1], g.dh = p.dilation[0], g.dw = p.dilation[1];
  g.count_include_pad = p.count_include_pad;
  const int64_t spanh = g.dh * (g.kh - 1) + 1, spanw = g.dw * (g.kw - 1) + 1;
  WEFT_CHECK(spanh <= g.H + 2 * g.ph && spanw <= g.W + 2 * g.pw, op, ": input ", xs, ": kernel ", pair_str(p.kernel),
             " with dilation ", pair_str(p.dilation), " spans ", spanh, "x", spanw, ", larger than the padded input ",
             g.H + 2 * g.ph, "x", g.W + 2 * g.pw, " (output size would be < 1)");
  g.Ho = (g.H + 2 * g.ph - spanh) / g.sh + 1;
  g.Wo = (g.W + 2 * g.pw - spanw) / g.sw + 1;
  return g;
}

// Checks that grad is the (N,C,Ho,Wo) gradient of a pooling of an x_shape input.
void check_pool_grad(const char* op, const Tensor& grad, const Shape& xs) {
  WEFT_CHECK(xs.size() == 4, op, ": the input shape must be 4-D (N,C,H,W), got ", xs);
  WEFT_CHECK(grad.dim() == 4 && grad.size(0) == xs[0] && grad.size(1) == xs[1], op, ": grad ", grad.shape(),
             " is not an (N,C,Ho,Wo) gradient for input ", xs);
}

// One plane: x is (H,W); out and arg are (Ho,Wo). NaN wins over numbers, like PyTorch.
// The geometry is copied into locals first: `arg` is an int64_t*, so through the
// reference the compiler would have to reload every field of g after each store.
// The 2x2, stride-2 window of nearly every CNN, in two passes the compiler vectorises:
// first the larger of each vertical pair across the whole row, then of each horizontal
// pair. `b` wins over `a` when larger or NaN (NaN propagates, like PyTorch).
template <class T>
void max_pool_plane_2x2(const T* __restrict x, T* __restrict out, int64_t* __restrict arg, int64_t W, int64_t Ho,
                        int64_t Wo) {
  std::vector<T> colmax_buf(W);
  std::vector<int64_t> colarg_buf(W);
  // restrict locals, not the vectors: through the vectors the compiler reloads their data
  // pointers after every store and gives up on vectorising.
  T* __restrict colmax = colmax_buf.data();
  int64_t* __restrict colarg = colarg_buf.data();
  for (int64_t oh = 0; oh < Ho; ++oh) {
    const T* __restrict r0 = x + 2 * oh * W;
    const T* __restrict r1 = r0 + W;
    const int64_t base0 = 2 * oh * W;
    for (int64_t w = 0; w < W; ++w) {
      const bool lower = (r1[w] > r0[w]) | ((r1[w] != r1[w]) & (r0[w] == r0[w]));
      colmax[w] = lower ? r1[w] : r0[w];
      colarg[w] = base0 + w + (lower ? W : 0);
    }
    T* __restrict o = out + oh * Wo;
    int64_t* __restrict a = arg + oh * Wo;
    for (int64_t ow = 0; ow < Wo; ++ow) {
      const T l = colmax[2 * ow], r = colmax[2 * ow + 1];
      const bool right = (r > l) | ((r != r) & (l == l));
      o[ow] = right ? r : l;
      a[ow] = right ? colarg[2 * ow + 1] : colarg[2 * ow];
    }
  }
}

template <class T>
void max_pool_plane(const T* x, T* out, int64_t* arg, const PoolGeom& g) {
  const int64_t H = g.H, W = g.W, Ho = g.Ho, Wo = g.Wo, kh = g.kh, kw = g.kw;
  const int64_t sh = g.sh, sw = g.sw, ph = g.ph, pw = g.pw, dh = g.dh, dw = g.dw;
  if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && dh == 1 && dw == 1)
    return max_pool_plane_2x2(x, out, arg, W, Ho, Wo);
  if (ph == 0 && pw == 0 && dh == 1 && dw == 1) {
    // No padding: every window lies inside the plane, so no bounds checks.
    for (int64_t oh = 0; oh < Ho; ++oh) {
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const int64_t first = oh * sh * W + ow * sw;
        T best = x[first];
        int64_t where = first;
        for (int64_t i = 0; i < kh; ++i)
          for (int64_t j = 0; j < kw; ++j) {
            const int64_t at = first + i * W + j;
            const T v = x[at];
            // Branch-free select: which pixel wins is data-dependent and random, so a
            // branch here mispredicts half the time and cost most of the pooling time.
            const bool take = (v > best) | ((v != v) & (best == best));
            best = take ? v : best;
            where = take ? at : where;
          }
        out[oh * Wo + ow] = best;
        arg[oh * Wo + ow] = where;
      }
    }
    return;
  }
  for (int64_t oh = 0; oh < Ho; ++oh) {
    for (int64_t ow = 0; ow < Wo; ++ow) {
      T best = -std::numeric_limits<T>::infinity();
      int64_t where = -1;  // stays -1 only if the window is all padding
      for (int64_t i = 0; i < kh; ++i) {
        const int64_t ih = oh * sh - ph + i * dh;
        if (ih < 0 || ih >= H) continue;
        for (int64_t j = 0; j < kw; ++j) {
          const int64_t iw = ow * sw - pw + j * dw;
          if (iw < 0 || iw >= W) continue;
          const T v = x[ih * W + iw];
          if (where < 0 || v > best || (v != v && best == best)) best = v, where = ih * W + iw;
        }
      }
      out[oh * Wo + ow] = best;
      arg[oh * Wo + ow] = where;
    }
  }
}

// The window [h0,h1) x [w0,w1) of output (oh,ow), clipped to the input, and the divisor
// PyTorch uses for it.
struct AvgWindow {
  int64_t h0, h1, w0, w1, divisor;
};
AvgWindow avg_window(int64_t oh, int64_t ow, const PoolGeom& g) {
  int64_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
  int64_t h1 = std::min(h0 + g.kh, g.H + g.ph), w1 = std::min(w0 + g.kw, g.W + g.pw);
  const int64_t padded = (h1 - h0) * (w1 - w0);
  h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
  h1 = std::min(h1, g.H), w1 = std::min(w1, g.W);
  return {h0, h1, w0, w1, g.count_include_pad ? padded : (h1 - h0) * (w1 - w0)};
}

template <class T>
void avg_pool_plane(const T* x, T* out, const PoolGeom& g) {
  for (int64_t oh = 0; oh < g.Ho; ++oh) {
    for (int64_t ow = 0; ow < g.Wo; ++ow) {
      const AvgWindow a = avg_window(oh, ow, g);
      T sum = 0;
      for (int64_t ih = a.h0; ih < a.h1; ++ih)
        for (int64_t iw = a.w0; iw < a.w1; ++iw) sum += x[ih * g.W + iw];
      out[oh * g.Wo + ow] = a.divisor > 0 ? sum / T(a.divisor) : T(0);
    }
  }
}

// The adjoint of avg_pool_plane: gx (H,W) must start zeroed.
template <class T>
void avg_pool_plane_backward(const T* grad, T* gx, const PoolGeom& g) {
  for (int64_t oh = 0; oh < g.Ho; ++oh) {
    for (int64_t ow = 0; ow < g.Wo; ++ow) {
      const AvgWindow a = avg_window(oh, ow, g);
      if (a.divisor == 0) continue;
      const T share = grad[oh * g.Wo + ow] / T(a.divisor);
      for (int64_t ih = a.h0; ih < a.h1; ++ih)
        for (int64_t iw = a.w0; iw < a.w1; ++iw) gx[ih * g.W + iw] += share;
    }
  }
}

}  // namespace

// x (N,C,H,W) -> {out (N,C,Ho,Wo), argmax (N,C,Ho,Wo) int64 flat index into the H*W plane}
std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, const Pool2dParams& p) {
  check_cpu("max_pool2d", x);
  const PoolGeom g = pool_geometry("max_pool2d", x.shape(), p);
  Tensor out = empty({g.N, g.C, g.Ho, g.Wo}, x.dtype(), x.device());
  Tensor arg = empty({g.N, g.C, g.Ho, g.Wo}, kInt64, x.device());
  const Tensor xc = contiguous(x);
  dispatch_floating(x.dtype(), "max_pool2d", [&]<class T>() {
    const T* px = xc.data<T>();
    T* po = out.data<T>();
    int64_t* pa = arg.data<int64_t>();
    parallel_for(0, g.planes(), g.grain(), [&](int64_t b, int64_t e) {
      for (int64_t q = b; q < e; ++q)
        max_pool_plane(px + q * g.H * g.W, po + q * g.Ho * g.Wo, pa + q * g.Ho * g.Wo, g);
    });
  });
  return {out, arg};
}

// grad (N,C,Ho,Wo), argmax from max_pool2d -> dLoss/dx (N,C,H,W) = x_shape
Tensor max_pool2d_backward(const Tensor& grad, const Tensor& argmax, const Shape& x_shape) {
  check_cpu("max_pool2d_backward", grad);
  check_pool_grad("max_pool2d_backward", grad, x_shape);
  WEFT_CHECK(argmax.defined() && argmax.dtype() == kInt64 && argmax.shape() == grad.shape(),
             "max_pool2d_backward: argmax must be an int64 tensor shaped like grad ", grad.shape(), ", got ",
             argmax.defined() ? detail::str(dtype_name(argmax.dtype()), " ", argmax.shape()) : "undefined");
  WEFT_CHECK(argmax.device() == grad.device(), "max_pool2d_backward: argmax is on ", argmax.device(), ", grad on ",
             grad.device());
  Tensor gx = empty(x_shape, grad.dtype(), grad.device());
  fill_(gx, 0.0);
  const int64_t plane = x_shape[2] * x_shape[3], oplane = grad.size(2) * grad.size(3);
  const Tensor gc = contiguous(grad), ac = contiguous(argmax);
  dispatch_floating(grad.dtype(), "max_pool2d_backward", [&]<class T>() {
    const T* pg = gc.data<T>();
    const int64_t* pa = ac.data<int64_t>();
    T* px = gx.data<T>();
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, oplane));
    parallel_for(0, x_shape[0] * x_shape[1], grain, [&](int64_t b, int64_t e) {
      for (int64_t q = b; q < e; ++q) {
        for (int64_t k = 0; k < oplane; ++k) {
          const int64_t i = pa[q * oplane + k];
          if (i < 0) continue;  // an all-padding window: no input pixel to credit
          WEFT_CHECK(i < plane, "max_pool2d_backward: argmax ", i, " is outside the ", x_shape[2], "x", x_shape[3],
                     " input plane of ", x_shape);
          px[q * plane + i] += pg[q * oplane + k];
        }
      }
    });
  });
  return gx;
}

// x (N,C,H,W) -> out (N,C,Ho,Wo), each the mean of its window
Tensor avg_pool2d(const Tensor& x, const Pool2dParams& p) {
  check_cpu("avg_pool2d", x);
  WEFT_CHECK(p.dilation[0] == 1 && p.dilation[1] == 1, "avg_pool2d: input ", x.shape(),
             ": average pooling has no dilation, got ", pair_str(p.dilation));
  const PoolGeom g = pool_geometry("avg_pool2d", x.shape(), p);
  Tensor out = empty({g.N, g.C, g.Ho, g.Wo}, x.dtype(), x.device());
  const Tensor xc = contiguous(x);
  dispatch_floating(x.dtype(), "avg_pool2d", [&]<class T>() {
    const T* px = xc.data<T>();
    T* po = out.data<T>();
    parallel_for(0, g.planes(), g.grain(), [&](int64_t b, int64_t e) {
      for (int64_t q = b; q < e; ++q) avg_pool_plane(px + q * g.H * g.W, po + q * g.Ho * g.Wo, g);
    });
  });
  return out;
}

// grad (N,C,Ho,Wo) -> dLoss/dx (N,C,H,W) = x_shape
Tensor avg_pool2d_backward(const Tensor& grad, const Shape& x_shape, const Pool2dParams& p) {
  check_cpu("avg_pool2d_backward", grad);
  WEFT_CHECK(p.dilation[0] == 1 && p.dilation[1] == 1, "avg_pool2d_backward: input ", x_shape,
             ": average pooling has no dilation, got ", pair_str(p.dilation));
  const PoolGeom g = pool_geometry("avg_pool2d_backward", x_shape, p);
  const Shape expect{g.N, g.C, g.Ho, g.Wo};
  WEFT_CHECK(grad.shape() == expect, "avg_pool2d_backward: grad ", grad.shape(), " does not match the output ", expect,
             " of input ", x_shape);
  Tensor gx = empty(x_shape, grad.dtype(), grad.device());
  fill_(gx, 0.0);
  const Tensor gc = contiguous(grad);
  dispatch_floating(grad.dtype(), "avg_pool2d_backward", [&]<class T>() {
    const T* pg = gc.data<T>();
    T* px = gx.data<T>();
    parallel_for(0, g.planes(), g.grain(), [&](int64_t b, int64_t e) {
      for (int64_t q = b; q < e; ++q) avg_pool_plane_backward(pg + q * g.Ho * g.Wo, px + q * g.H * g.W, g);
    });
  });
  return gx;
}

}  // namespace weft::raw
