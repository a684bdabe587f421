// 2-D max and average pooling on the CPU, parallel over the N*C planes.
//
// x is (N,C,H,W), out is (N,C,Ho,Wo) with Ho = (H + 2*pad - dil*(k-1) - 1) / stride + 1
// (floor, like PyTorch's ceil_mode=False). Every plane is pooled on its own, so a plane
// is the unit of parallel work and the backward passes need no locks.
//
// Max pooling treats padding as -infinity (a padded position never wins); backward finds
// each window's winner again in the saved input and routes the output gradient to that
// one pixel. relu_max_pool2d is max pooling of relu(x) in one pass: relu is applied to
// each pixel as the window reads it, so relu(x) is never written out (in a small CNN that
// saves a full read and write of the largest activations, forward and backward, which is
// what a memory-bound step on a shared memory bus spends its time on). Average pooling
// divides by the window size including padding (count_include_pad) or by the number of
// real pixels in it.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../backend.h"
#include "../raw.h"
#include "../thread_pool.h"
#include "max_pool_2x2.h"

namespace weft::raw {

namespace {

std::string pair_str(const Size2& a) { return a.str(); }

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
// Pooling takes float32 or float64 tensors, on the CPU or a GPU.
void check_floating(const char* op, const Tensor& x) {
  WEFT_CHECK(x.defined(), op, ": the input tensor is undefined");
  WEFT_CHECK(is_floating(x.dtype()), op, ": expected a floating-point tensor, got ", x.dtype(), " ", x.shape());
}

// `b` beats the best so far `a` when larger or NaN (ew::pool_takes_over, PyTorch's
// rule: NaN propagates, and of several NaNs the last wins). Branch-free on purpose:
// which pixel wins is data-dependent and random, so a branch here mispredicts half the
// time.
template <class T>
inline bool beats(T b, T a) {
  return ew::pool_takes_over(b, a);
}

// The flat index ih*W + iw of the pixel that wins window (oh,ow), scanning the window
// row by row and keeping the first of equal values (but the last NaN); -1 when the
// window is all padding (padding counts as -infinity and never wins). Forward, indices
// and backward all ask this one function, so they always agree on the winner.
template <bool Relu, class T>
int64_t window_argmax(const T* x, int64_t oh, int64_t ow, const PoolGeom& g) {
  int64_t where = -1;
  T best = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t ih = oh * g.sh - g.ph + i * g.dh;
    if (ih < 0 || ih >= g.H) continue;
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t iw = ow * g.sw - g.pw + j * g.dw;
      if (iw < 0 || iw >= g.W) continue;
      const T v = pool2x2::in<Relu>(x[ih * g.W + iw]);
      if (where < 0 || beats(v, best)) best = v, where = ih * g.W + iw;
    }
  }
  return where;
}

// The 2x2, stride-2, unpadded window of nearly every CNN gets its own row kernels
// (max_pool_2x2.h): no bounds checks, 16 windows at a time.
bool is_2x2(const PoolGeom& g) {
  return g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0 && g.dh == 1 && g.dw == 1;
}

// One plane: x is (H,W), out is (Ho,Wo).
template <bool Relu, class T>
void max_pool_plane(const T* __restrict x, T* __restrict out, const PoolGeom& g) {
  if (is_2x2(g)) {
    for (int64_t oh = 0; oh < g.Ho; ++oh)
      pool2x2::forward_row<Relu>(x + 2 * oh * g.W, x + (2 * oh + 1) * g.W, out + oh * g.Wo, g.Wo,
                           pool2x2::overread_ok(oh, g.H, g.W, g.Ho, g.Wo));
    return;
  }
  for (int64_t oh = 0; oh < g.Ho; ++oh)
    for (int64_t ow = 0; ow < g.Wo; ++ow) {
      const int64_t at = window_argmax<Relu>(x, oh, ow, g);
      out[oh * g.Wo + ow] = at >= 0 ? pool2x2::in<Relu>(x[at]) : -std::numeric_limits<T>::infinity();
    }
}

// One plane of the backward pass: x and gx are (H,W), grad is (Ho,Wo). Each output's
// gradient goes to its window's winner, found again from x rather than remembered:
// recomputing costs one more scan of x, storing would cost an int64 index per output
// written in forward (which made forward several times slower).
template <bool Relu, class T>
void max_pool_plane_backward(const T* __restrict x, const T* __restrict grad, T* __restrict gx, const PoolGeom& g) {
  if (is_2x2(g)) {
    // The windows tile the plane, so each covered pixel is written exactly once (its
    // share or 0); only an odd last row or column lies outside every window.
    const int64_t W = g.W;
    for (int64_t oh = 0; oh < g.Ho; ++oh) {
      T* d0 = gx + 2 * oh * W;
      pool2x2::backward_row<Relu>(x + 2 * oh * W, x + (2 * oh + 1) * W, grad + oh * g.Wo, d0, d0 + W, g.Wo,
                            pool2x2::overread_ok(oh, g.H, g.W, g.Ho, g.Wo));
      for (int64_t w = 2 * g.Wo; w < W; ++w) d0[w] = d0[W + w] = T(0);
    }
    std::fill(gx + 2 * g.Ho * W, gx + g.H * W, T(0));
    return;
  }
  std::fill(gx, gx + g.H * g.W, T(0));
  for (int64_t oh = 0; oh < g.Ho; ++oh)
    for (int64_t ow = 0; ow < g.Wo; ++ow) {
      const int64_t at = window_argmax<Relu>(x, oh, ow, g);
      // windows may overlap: add; under relu only where relu passes it (not <= 0)
      if (at >= 0 && (!Relu || ew::relu_passes(pool2x2::in<Relu>(x[at])))) gx[at] += grad[oh * g.Wo + ow];
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

// Runs body(q) for every plane q of the N*C planes, in parallel chunks.
template <class F>
void for_each_plane(const PoolGeom& g, F&& body) {
  parallel_for(0, g.planes(), g.grain(), [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q) body(q);
  }, 4);
}

namespace {

// max_pool2d (Relu = false) and relu_max_pool2d (true); `op` names it in errors.
template <bool Relu>
Tensor max_pool(const char* op, const Tensor& x, const Pool2dParams& p) {
  check_floating(op, x);
  const PoolGeom g = pool_geometry(op, x.shape(), p);
  Tensor out = empty({g.N, g.C, g.Ho, g.Wo}, x.dtype(), x.device());
  if (is_half(x.dtype()) && x.device().is_cpu()) {  // the fused float32 loop (half_backend.h would split relu off)
    copy_(out, max_pool<Relu>(op, to_dtype(x, kFloat32), p));
    return out;
  }
  if (routed(x)) {
    // Not fused on the GPU, which has bandwidth to spare: relu, then the pooling kernel.
    // (Its backward computes relu(x) again, so nn::Sequential fuses on the CPU only.)
    if (out.numel()) backend_for(x).max_pool2d(out, Relu ? unary(Unary::Relu, x) : x, p);
    return out;
  }
  const Tensor xc = contiguous(x);
  dispatch_floating(x.dtype(), op, [&]<class T>() {
    const T* px = xc.data<T>();
    T* po = out.data<T>();
    for_each_plane(g, [&](int64_t q) { max_pool_plane<Relu>(px + q * g.H * g.W, po + q * g.Ho * g.Wo, g); });
  });
  return out;
}

template <bool Relu>
Tensor max_pool_backward(const char* op, const Tensor& grad, const Tensor& x, const Pool2dParams& p) {
  check_floating(op, grad);
  check_same(op, grad, x);
  const PoolGeom g = pool_geometry(op, x.shape(), p);
  const Shape expect{g.N, g.C, g.Ho, g.Wo};
  WEFT_CHECK(grad.shape() == expect, op, ": grad ", grad.shape(), " does not match the output ", expect, " of input ",
             x.shape());
  Tensor gx = empty(x.shape(), x.dtype(), x.device());
  if (is_half(x.dtype()) && x.device().is_cpu()) {  // fused, as in forward
    copy_(gx, max_pool_backward<Relu>(op, to_dtype(grad, kFloat32), to_dtype(x, kFloat32), p));
    return gx;
  }
  if (routed(x)) {  // unfused, as in forward: relu(x) again, pool's backward, relu's
    const Tensor r = Relu ? unary(Unary::Relu, x) : x;
    if (gx.numel()) backend_for(x).max_pool2d_backward(gx, grad, r, p);
    return Relu ? relu_backward(gx, r) : gx;
  }
  const Tensor gc = contiguous(grad), xc = contiguous(x);
  dispatch_floating(x.dtype(), op, [&]<class T>() {
    const T *pg = gc.data<T>(), *px = xc.data<T>();
    T* pgx = gx.data<T>();
    for_each_plane(g, [&](int64_t q) {
      max_pool_plane_backward<Relu>(px + q * g.H * g.W, pg + q * g.Ho * g.Wo, pgx + q * g.H * g.W, g);
    });
  });
  return gx;
}

}  // namespace

// x (N,C,H,W) -> out (N,C,Ho,Wo), each the max of its window
Tensor max_pool2d(const Tensor& x, const Pool2dParams& p) { return max_pool<false>("max_pool2d", x, p); }

// x (N,C,H,W) -> max_pool2d(relu(x)), in one pass over x. (Not relu(max_pool2d(x)): the
// two differ in which of tied zeros wins, so in the sign of a zero output, and for an
// all-padding window.)
Tensor relu_max_pool2d(const Tensor& x, const Pool2dParams& p) { return max_pool<true>("relu_max_pool2d", x, p); }

// x (N,C,H,W) -> argmax (N,C,Ho,Wo) int64: where each window's max came from, as a flat
// index h*W + w into its H*W plane (-1 for an all-padding window), like PyTorch's
// return_indices=True.
Tensor max_pool2d_indices(const Tensor& x, const Pool2dParams& p) {
  check_floating("max_pool2d_indices", x);
  const PoolGeom g = pool_geometry("max_pool2d_indices", x.shape(), p);
  Tensor arg = empty({g.N, g.C, g.Ho, g.Wo}, kInt64, x.device());
  if (routed(x)) {
    if (arg.numel()) backend_for(x).max_pool2d_indices(arg, x, p);
    return arg;
  }
  const Tensor xc = contiguous(x);
  dispatch_floating(x.dtype(), "max_pool2d_indices", [&]<class T>() {
    const T* px = xc.data<T>();
    int64_t* pa = arg.data<int64_t>();
    for_each_plane(g, [&](int64_t q) {
      for (int64_t oh = 0; oh < g.Ho; ++oh)
        for (int64_t ow = 0; ow < g.Wo; ++ow)
          pa[(q * g.Ho + oh) * g.Wo + ow] = window_argmax<false>(px + q * g.H * g.W, oh, ow, g);
    });
  });
  return arg;
}

// grad (N,C,Ho,Wo), x (N,C,H,W) the forward's input -> dLoss/dx (N,C,H,W)
Tensor max_pool2d_backward(const Tensor& grad, const Tensor& x, const Pool2dParams& p) {
  return max_pool_backward<false>("max_pool2d_backward", grad, x, p);
}

// The same for relu_max_pool2d (x is the input before relu)
Tensor relu_max_pool2d_backward(const Tensor& grad, const Tensor& x, const Pool2dParams& p) {
  return max_pool_backward<true>("relu_max_pool2d_backward", grad, x, p);
}

// x (N,C,H,W) -> out (N,C,Ho,Wo), each the mean of its window
Tensor avg_pool2d(const Tensor& x, const Pool2dParams& p) {
  check_floating("avg_pool2d", x);
  WEFT_CHECK(p.dilation[0] == 1 && p.dilation[1] == 1, "avg_pool2d: input ", x.shape(),
             ": average pooling has no dilation, got ", pair_str(p.dilation));
  const PoolGeom g = pool_geometry("avg_pool2d", x.shape(), p);
  Tensor out = empty({g.N, g.C, g.Ho, g.Wo}, x.dtype(), x.device());
  if (routed(x)) {
    if (out.numel()) backend_for(x).avg_pool2d(out, x, p);
    return out;
  }
  const Tensor xc = contiguous(x);
  dispatch_floating(x.dtype(), "avg_pool2d", [&]<class T>() {
    const T* px = xc.data<T>();
    T* po = out.data<T>();
    parallel_for(0, g.planes(), g.grain(), [&](int64_t b, int64_t e) {
      for (int64_t q = b; q < e; ++q) avg_pool_plane(px + q * g.H * g.W, po + q * g.Ho * g.Wo, g);
    }, 4);
  });
  return out;
}

// grad (N,C,Ho,Wo) -> dLoss/dx (N,C,H,W) = x_shape
Tensor avg_pool2d_backward(const Tensor& grad, const Shape& x_shape, const Pool2dParams& p) {
  check_floating("avg_pool2d_backward", grad);
  WEFT_CHECK(p.dilation[0] == 1 && p.dilation[1] == 1, "avg_pool2d_backward: input ", x_shape,
             ": average pooling has no dilation, got ", pair_str(p.dilation));
  const PoolGeom g = pool_geometry("avg_pool2d_backward", x_shape, p);
  const Shape expect{g.N, g.C, g.Ho, g.Wo};
  WEFT_CHECK(grad.shape() == expect, "avg_pool2d_backward: grad ", grad.shape(), " does not match the output ", expect,
             " of input ", x_shape);
  Tensor gx = empty(x_shape, grad.dtype(), grad.device());
  if (routed(grad)) {
    if (gx.numel()) backend_for(grad).avg_pool2d_backward(gx, grad, p);
    return gx;
  }
  fill_(gx, 0.0);
  const Tensor gc = contiguous(grad);
  dispatch_floating(grad.dtype(), "avg_pool2d_backward", [&]<class T>() {
    const T* pg = gc.data<T>();
    T* px = gx.data<T>();
    parallel_for(0, g.planes(), g.grain(), [&](int64_t b, int64_t e) {
      for (int64_t q = b; q < e; ++q) avg_pool_plane_backward(pg + q * g.Ho * g.Wo, px + q * g.H * g.W, g);
    }, 4);
  });
  return gx;
}

}  // namespace weft::raw
