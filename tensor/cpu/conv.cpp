// 2-D convolution on the CPU: im2col + GEMM, parallel over the batch.
//
// x is (N,C,H,W), w is (K,C/G,kh,kw), out is (N,K,Ho,Wo), G groups. For one sample and
// one group, im2col unrolls the input patches into a matrix
//   cols (Cg*kh*kw, Ho*Wo):  row (c,i,j), column (oh,ow) holds the input pixel that
//                            kernel tap (i,j) of channel c sees at output (oh,ow),
// so the convolution becomes one matrix product  out_g (Kg, Ho*Wo) = W_g (Kg, Cg*kh*kw) @ cols.
// The two backward passes are the two other products of the same three matrices:
//   d cols = W_g^T @ grad_g, folded back onto the input image by col2im (which adds,
//            because neighbouring patches overlap), and
//   d W_g  = sum over samples of grad_g @ cols^T.
// A 1x1, stride-1, unpadded conv needs no unrolling: cols is the input plane itself.
//
// The GEMMs go through gemm.h (OpenBLAS or Eigen).
#include <algorithm>
#include <tuple>
#include <vector>

#include "../backend.h"
#include "../raw.h"
#include "../thread_pool.h"
#include "gemm.h"
#include "sum.h"
#include "winograd.h"

namespace weft::raw {

namespace {

std::string pair_str(const Size2& a) { return a.str(); }

// floor(a / b) for b > 0, also for negative a (C++ division truncates toward zero).
int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Everything the kernels need to know about one convolution, checked once.
struct ConvGeom {
  int64_t N, C, H, W;     // input
  int64_t K, Cg, kh, kw;  // weight; Cg = C / G input channels per group
  int64_t G, Kg;          // groups and output channels per group
  int64_t Ho, Wo;
  int64_t sh, sw, ph, pw, dh, dw;

  int64_t rows() const { return Cg * kh * kw; }  // of one group's column matrix
  int64_t cols() const { return Ho * Wo; }
  int64_t in_plane() const { return H * W; }
  bool pointwise() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
};

// Checks the shapes and parameters of a convolution of an x_shape input with a w_shape
// weight, and works out the output size. `op` names the caller in every error.
ConvGeom conv_geometry(const char* op, const Shape& xs, const Shape& ws, const Conv2dParams& p) {
  WEFT_CHECK(xs.size() == 4, op, ": input must be 4-D (N,C,H,W), got ", xs, " (weight ", ws, ")");
  WEFT_CHECK(ws.size() == 4, op, ": weight must be 4-D (K,C/groups,kh,kw), got ", ws, " (input ", xs, ")");
  const std::string shapes = detail::str("input ", xs, ", weight ", ws);
  WEFT_CHECK(p.stride[0] >= 1 && p.stride[1] >= 1, op, ": ", shapes, ": stride must be >= 1, got ", pair_str(p.stride));
  WEFT_CHECK(p.dilation[0] >= 1 && p.dilation[1] >= 1, op, ": ", shapes, ": dilation must be >= 1, got ",
             pair_str(p.dilation));
  WEFT_CHECK(p.padding[0] >= 0 && p.padding[1] >= 0, op, ": ", shapes, ": padding must be >= 0, got ",
             pair_str(p.padding));
  WEFT_CHECK(p.groups >= 1, op, ": ", shapes, ": groups must be >= 1, got ", p.groups);
  WEFT_CHECK(ws[0] % p.groups == 0, op, ": weight ", ws, " has ", ws[0], " output channels, not divisible by groups ",
             p.groups, " (input ", xs, ")");
  WEFT_CHECK(xs[1] == ws[1] * p.groups, op, ": input ", xs, " has ", xs[1], " channels, weight ", ws, " with groups ",
             p.groups, " expects ", ws[1] * p.groups);
  WEFT_CHECK(ws[2] >= 1 && ws[3] >= 1, op, ": ", shapes, ": the kernel must be at least 1x1");
  ConvGeom g{};
  g.N = xs[0], g.C = xs[1], g.H = xs[2], g.W = xs[3];
  g.K = ws[0], g.Cg = ws[1], g.kh = ws[2], g.kw = ws[3];
  g.G = p.groups, g.Kg = g.K / g.G;
  g.sh = p.stride[0], g.sw = p.stride[1], g.ph = p.padding[0], g.pw = p.padding[1];
  g.dh = p.dilation[0], g.dw = p.dilation[1];
  g.Ho = floor_div(g.H + 2 * g.ph - g.dh * (g.kh - 1) - 1, g.sh) + 1;
  g.Wo = floor_div(g.W + 2 * g.pw - g.dw * (g.kw - 1) - 1, g.sw) + 1;
  WEFT_CHECK(g.Ho >= 1 && g.Wo >= 1, op, ": ", shapes, " with padding ", pair_str(p.padding), ", dilation ",
             pair_str(p.dilation), ", stride ", pair_str(p.stride), " gives output size (", g.Ho, ",", g.Wo,
             "); the kernel is larger than the padded input, so each output size must be >= 1");
  return g;
}

// Checks that grad is the (N,K,Ho,Wo) gradient of this convolution's output.
void check_grad(const char* op, const Tensor& grad, const ConvGeom& g, const Shape& xs, const Shape& ws) {
  const Shape expect{g.N, g.K, g.Ho, g.Wo};
  WEFT_CHECK(grad.shape() == expect, op, ": grad ", grad.shape(), " does not match the output ", expect,
             " of input ", xs, " and weight ", ws);
}

// The output positions o in [lo, hi) whose input index o*stride + off lies in [0, size).
std::pair<int64_t, int64_t> valid_outputs(int64_t off, int64_t stride, int64_t size, int64_t n_out) {
  const int64_t lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  const int64_t hi = size - 1 - off < 0 ? 0 : (size - 1 - off) / stride + 1;
  return {std::min(lo, n_out), std::clamp(hi, std::min(lo, n_out), n_out)};
}

// Stride 1 with the output as wide as the input (Wo == W: "same" padding, the common
// case) allows a shortcut. Output (oh, ow) of tap (i, j) reads input (oh + offh, ow + offw),
// and with equal widths the flat indices differ by one constant, shift = offh*W + offw: a
// tap's row of cols is the input plane shifted by `shift`, one contiguous copy, instead
// of Ho short row copies (14 floats each in the sample CNN, where the per-copy overhead
// dominated). The copy wraps around the row edges: the entries of output columns whose
// input column lies outside the image (ow < wlo or ow >= whi) came from the neighbouring
// row and are fixed afterwards.
struct ShiftedTap {
  int64_t shift;   // input flat index - output flat index
  int64_t q0, q1;  // the output flat indices [q0, q1) that read inside the input plane
  int64_t hlo, hhi, wlo, whi;  // the valid output rows and columns of this tap
};

bool same_width(const ConvGeom& g) { return g.sh == 1 && g.sw == 1 && g.Wo == g.W; }

ShiftedTap shifted_tap(int64_t i, int64_t j, const ConvGeom& g) {
  ShiftedTap t{};
  const int64_t offh = i * g.dh - g.ph, offw = j * g.dw - g.pw;
  std::tie(t.hlo, t.hhi) = valid_outputs(offh, 1, g.H, g.Ho);
  std::tie(t.wlo, t.whi) = valid_outputs(offw, 1, g.W, g.Wo);
  t.shift = offh * g.W + offw;
  // Clamped to the valid rows: a tap may have none (a 3x3 kernel on a 1-row image).
  t.q0 = std::min(std::max(t.hlo * g.Wo, -t.shift), t.hhi * g.Wo);
  t.q1 = std::max(t.q0, std::min(t.hhi * g.Wo, g.in_plane() - t.shift));
  return t;
}

// Zeroes the entries of a tap's row (Ho*Wo) whose input column lies outside the image.
template <class T>
void zero_wrapped_columns(T* row, const ShiftedTap& t, const ConvGeom& g) {
  if (t.wlo == 0 && t.whi == g.Wo) return;
  for (int64_t oh = t.hlo; oh < t.hhi; ++oh) {
    std::fill(row + oh * g.Wo, row + oh * g.Wo + t.wlo, T(0));
    std::fill(row + oh * g.Wo + t.whi, row + (oh + 1) * g.Wo, T(0));
  }
}

// x is (Cg,H,W) of one sample and group; cols is (Cg*kh*kw, Ho*Wo). Zero padding shows up
// as zeros in cols, so the GEMM needs no special cases.
template <class T>
void im2col(const T* x, T* cols, const ConvGeom& g) {
  if (same_width(g)) {
    for (int64_t c = 0; c < g.Cg; ++c)
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j) {
          T* row = cols + ((c * g.kh + i) * g.kw + j) * g.cols();
          const ShiftedTap t = shifted_tap(i, j, g);
          const T* plane = x + c * g.in_plane();  // output q reads plane[q + shift]
          std::fill(row, row + t.q0, T(0));
          if (t.q1 > t.q0) std::copy(plane + (t.q0 + t.shift), plane + (t.q1 + t.shift), row + t.q0);
          std::fill(row + t.q1, row + g.cols(), T(0));
          zero_wrapped_columns(row, t, g);
        }
    return;
  }
  for (int64_t c = 0; c < g.Cg; ++c) {
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        T* row = cols + ((c * g.kh + i) * g.kw + j) * g.cols();
        const int64_t offh = i * g.dh - g.ph, offw = j * g.dw - g.pw;
        const auto [wlo, whi] = valid_outputs(offw, g.sw, g.W, g.Wo);
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          T* r = row + oh * g.Wo;
          const int64_t ih = oh * g.sh + offh;
          if (ih < 0 || ih >= g.H) {
            std::fill(r, r + g.Wo, T(0));
            continue;
          }
          const T* xr = x + (c * g.H + ih) * g.W;
          std::fill(r, r + wlo, T(0));
          if (g.sw == 1) std::copy(xr + wlo + offw, xr + whi + offw, r + wlo);  // a plain row copy
          else for (int64_t ow = wlo; ow < whi; ++ow) r[ow] = xr[ow * g.sw + offw];
          std::fill(r + whi, r + g.Wo, T(0));
        }
      }
    }
  }
}

// The adjoint of im2col: adds each entry of cols (Cg*kh*kw, Ho*Wo) into the input pixel
// it was copied from. x is (Cg,H,W) and must start zeroed. In the same-width case cols
// is scratch that is overwritten: its wrapped entries (the gradient of padding) are
// zeroed so that each tap is one contiguous add.
template <class T>
void col2im(T* cols, T* x, const ConvGeom& g) {
  if (same_width(g)) {
    for (int64_t c = 0; c < g.Cg; ++c)
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j) {
          T* __restrict row = cols + ((c * g.kh + i) * g.kw + j) * g.cols();
          const ShiftedTap t = shifted_tap(i, j, g);
          zero_wrapped_columns(row, t, g);
          T* __restrict plane = x + c * g.in_plane();
          for (int64_t q = t.q0; q < t.q1; ++q) plane[q + t.shift] += row[q];  // vectorises
        }
    return;
  }
  for (int64_t c = 0; c < g.Cg; ++c) {
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        const T* row = cols + ((c * g.kh + i) * g.kw + j) * g.cols();
        const int64_t offh = i * g.dh - g.ph, offw = j * g.dw - g.pw;
        const auto [hlo, hhi] = valid_outputs(offh, g.sh, g.H, g.Ho);
        const auto [wlo, whi] = valid_outputs(offw, g.sw, g.W, g.Wo);
        for (int64_t oh = hlo; oh < hhi; ++oh) {
          const T* r = row + oh * g.Wo;
          T* xr = x + (c * g.H + oh * g.sh + offh) * g.W;
          if (g.sw == 1) {
            T* __restrict dst = xr + offw;
            const T* __restrict src = r;
            for (int64_t ow = wlo; ow < whi; ++ow) dst[ow] += src[ow];  // vectorises
          } else {
            for (int64_t ow = wlo; ow < whi; ++ow) xr[ow * g.sw + offw] += r[ow];
          }
        }
      }
    }
  }
}

// The column matrix (rows, Ho*Wo) of sample n, group grp: the input itself for a
// pointwise conv, else unrolled into `buf`.
template <class T>
const T* columns_of(const T* x, int64_t n, int64_t grp, const ConvGeom& g, std::vector<T>& buf) {
  const T* xg = x + (n * g.C + grp * g.Cg) * g.in_plane();
  if (g.pointwise()) return xg;
  im2col(xg, buf.data(), g);
  return buf.data();
}

// Whether a convolution runs through Winograd's F(2x2, 3x3) (winograd.h): 3x3, stride 1,
// undilated, ungrouped, with enough channels in and out that the 16 small GEMMs beat one
// im2col GEMM (a 1-channel input, like the sample CNN's first layer, does not: its GEMM
// would have a depth of 1).
bool use_winograd(const ConvGeom& g) {
  return g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.G == 1 && g.C >= 8 &&
         g.K >= 8;
}

Winograd3x3 winograd_geometry(const ConvGeom& g) { return {g.N, g.C, g.H, g.W, g.K, g.ph, g.pw}; }

// out (N,K,Ho,Wo) = conv(x, w) + b; b may be null.
template <class T>
void conv_forward(const T* x, const T* w, const T* b, T* out, const ConvGeom& g) {
  if (use_winograd(g)) return winograd_conv(x, w, b, out, winograd_geometry(g));
  parallel_for(0, g.N, 1, [&](int64_t n0, int64_t n1) {
    std::vector<T> buf(g.pointwise() ? 0 : g.rows() * g.cols());  // one per chunk, reused
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t grp = 0; grp < g.G; ++grp) {
        // o (Kg, Ho*Wo) starts as the bias of its channel (or 0); gemm adds W_g @ cols.
        T* o = out + (n * g.K + grp * g.Kg) * g.cols();
        for (int64_t k = 0; k < g.Kg; ++k) std::fill_n(o + k * g.cols(), g.cols(), b ? b[grp * g.Kg + k] : T(0));
        const T* cols = columns_of(x, n, grp, g, buf);
        cpu::gemm<T>(false, false, g.Kg, g.cols(), g.rows(), T(1), w + grp * g.Kg * g.rows(), g.rows(), cols, g.cols(),
                     T(1), o, g.cols());
      }
    }
  }, 4);
}

// gx (N,C,H,W) = col2im(W_g^T @ grad_g) for every sample and group.
template <class T>
void conv_backward_input(const T* grad, const T* w, T* gx, const ConvGeom& g) {
  if (use_winograd(g) && g.ph <= 2 && g.pw <= 2) return winograd_conv_backward_input(grad, w, gx, winograd_geometry(g));
  parallel_for(0, g.N, 1, [&](int64_t n0, int64_t n1) {
    std::vector<T> buf(g.pointwise() ? 0 : g.rows() * g.cols());
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t grp = 0; grp < g.G; ++grp) {
        const T* wg = w + grp * g.Kg * g.rows();                    // (Kg, rows)
        const T* go = grad + (n * g.K + grp * g.Kg) * g.cols();     // (Kg, Ho*Wo)
        T* gxg = gx + (n * g.C + grp * g.Cg) * g.in_plane();
        // d cols (rows, Ho*Wo) = W_g^T @ grad_g; for a pointwise conv the input plane is
        // the column matrix, so it is written there directly.
        T* dcols = g.pointwise() ? gxg : buf.data();
        cpu::gemm<T>(true, false, g.rows(), g.cols(), g.Kg, T(1), wg, g.rows(), go, g.cols(), T(0), dcols, g.cols());
        if (g.pointwise()) continue;
        std::fill(gxg, gxg + g.Cg * g.in_plane(), T(0));
        col2im(buf.data(), gxg, g);
      }
    }
  }, 4);
}

// gw (K, Cg*kh*kw) = sum over n of grad_n @ cols_n^T. Samples are split into fixed
// chunks, each with its own accumulator; the accumulators are then added in chunk order,
// so the result does not depend on which thread ran which chunk.
//
// With gb (K), also the bias gradient, grad summed over n, Ho, Wo: each sample's gradient
// rows are summed right after the GEMM has read them, while they are still in cache,
// instead of in a separate pass over all of grad (for the sample CNN's first layer, a
// 12.8 MB read saved per step). Returns false when the Winograd path ran, which leaves gb
// to the caller.
template <class T>
bool conv_backward_weight(const T* grad, const T* x, T* gw, T* gb, const ConvGeom& g) {
  if (use_winograd(g)) {
    winograd_conv_backward_weight(grad, x, gw, winograd_geometry(g));
    return false;
  }
  const int64_t wsize = g.K * g.rows();
  const int64_t chunks = std::min<int64_t>(g.N, 4 * num_threads());  // 4 per thread, as parallel_for's below
  std::vector<std::vector<T>> acc(chunks);
  std::vector<std::vector<double>> bacc(gb ? chunks : 0);  // bias sums in double, like raw::reduce
  parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    std::vector<T> buf(g.pointwise() ? 0 : g.rows() * g.cols());
    for (int64_t c = c0; c < c1; ++c) {
      acc[c].assign(wsize, T(0));
      if (gb) bacc[c].assign(g.K, 0.0);
      for (int64_t n = c * g.N / chunks; n < (c + 1) * g.N / chunks; ++n) {
        for (int64_t grp = 0; grp < g.G; ++grp) {
          // acc_g (Kg, rows) += grad_g (Kg, Ho*Wo) @ cols^T
          const T* go = grad + (n * g.K + grp * g.Kg) * g.cols();
          const T* cols = columns_of(x, n, grp, g, buf);
          cpu::gemm<T>(false, true, g.Kg, g.rows(), g.cols(), T(1), go, g.cols(), cols, g.cols(), T(1),
                       acc[c].data() + grp * g.Kg * g.rows(), g.rows());
          if (gb)
            for (int64_t k = 0; k < g.Kg; ++k) bacc[c][grp * g.Kg + k] += cpu::sum_contiguous(go + k * g.cols(), g.cols());
        }
      }
    }
  }, 4);
  std::fill(gw, gw + wsize, T(0));
  for (const auto& a : acc)
    for (int64_t i = 0; i < wsize; ++i) gw[i] += a[i];
  if (gb)
    for (int64_t k = 0; k < g.K; ++k) {
      double s = 0;
      for (const auto& b : bacc) s += b[k];
      gb[k] = static_cast<T>(s);
    }
  return true;
}

}  // namespace

// x (N,C,H,W), w (K,C/groups,kh,kw), bias (K) or undefined -> out (N,K,Ho,Wo)
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p) {
  check_same("conv2d", x, w);
  WEFT_CHECK(is_floating(x.dtype()), "conv2d: expected a floating-point tensor, got ", x.dtype());
  const ConvGeom g = conv_geometry("conv2d", x.shape(), w.shape(), p);
  if (bias.defined()) {
    check_same("conv2d", x, bias);
    WEFT_CHECK(bias.dim() == 1 && bias.size(0) == g.K, "conv2d: bias ", bias.shape(), " must be (", g.K,
               ") to match weight ", w.shape(), " (input ", x.shape(), ")");
  }
  Tensor out = empty({g.N, g.K, g.Ho, g.Wo}, x.dtype(), x.device());
  if (out.numel() == 0) return out;
  const Tensor xc = contiguous(x), wc = contiguous(w);
  const Tensor bc = bias.defined() ? contiguous(bias) : Tensor();
  if (routed(x)) {
    backend_for(x).conv2d(out, xc, wc, bc, p);
    return out;
  }
  dispatch_floating(x.dtype(), "conv2d", [&]<class T>() {
    conv_forward<T>(xc.data<T>(), wc.data<T>(), bc.defined() ? bc.data<T>() : nullptr, out.data<T>(), g);
  });
  return out;
}

// grad (N,K,Ho,Wo), w (K,C/groups,kh,kw) -> dLoss/dx (N,C,H,W) = x_shape
Tensor conv2d_backward_input(const Tensor& grad, const Tensor& w, const Shape& x_shape, const Conv2dParams& p) {
  check_same("conv2d_backward_input", grad, w);
  WEFT_CHECK(is_floating(grad.dtype()), "conv2d_backward_input: expected a floating-point tensor, got ", grad.dtype());
  const ConvGeom g = conv_geometry("conv2d_backward_input", x_shape, w.shape(), p);
  check_grad("conv2d_backward_input", grad, g, x_shape, w.shape());
  Tensor gx = empty(x_shape, grad.dtype(), grad.device());
  if (gx.numel() == 0) return gx;
  if (grad.numel() == 0 || w.numel() == 0) {  // no paths from x to the output
    fill_(gx, 0.0);
    return gx;
  }
  const Tensor gc = contiguous(grad), wc = contiguous(w);
  if (routed(grad)) {
    backend_for(grad).conv2d_backward_input(gx, gc, wc, p);
    return gx;
  }
  dispatch_floating(grad.dtype(), "conv2d_backward_input", [&]<class T>() {
    conv_backward_input<T>(gc.data<T>(), wc.data<T>(), gx.data<T>(), g);
  });
  return gx;
}

// grad (N,K,Ho,Wo), x (N,C,H,W) -> dLoss/dw (K,C/groups,kh,kw) = w_shape; with bias_grad,
// also dLoss/db (K) = grad summed over N, Ho, Wo (in the same pass where it can)
Tensor conv2d_backward_weight(const Tensor& grad, const Tensor& x, const Shape& w_shape, const Conv2dParams& p,
                              Tensor* bias_grad) {
  check_same("conv2d_backward_weight", grad, x);
  WEFT_CHECK(is_floating(grad.dtype()), "conv2d_backward_weight: expected a floating-point tensor, got ", grad.dtype());
  const ConvGeom g = conv_geometry("conv2d_backward_weight", x.shape(), w_shape, p);
  check_grad("conv2d_backward_weight", grad, g, x.shape(), w_shape);
  if (is_half(grad.dtype()) && grad.device().is_cpu() && bias_grad) {
    // Through float32 here rather than half_backend.h, so that the bias gradient comes
    // from the same widened grad in the same pass (half_backend.h would widen grad twice
    // and reduce it apart: about 5% of a bf16 CNN step, bench/train_step --precision bf16).
    Tensor gb;
    const Tensor gw = conv2d_backward_weight(to_dtype(grad, kFloat32), to_dtype(x, kFloat32), w_shape, p, &gb);
    *bias_grad = to_dtype(gb, grad.dtype());
    return to_dtype(gw, grad.dtype());
  }
  Tensor gw = empty(w_shape, grad.dtype(), grad.device());
  bool bias_done = false;
  if (bias_grad) *bias_grad = empty({g.K}, grad.dtype(), grad.device());
  if (gw.numel() > 0) {
    const Tensor gc = contiguous(grad), xc = contiguous(x);
    if (routed(grad)) backend_for(grad).conv2d_backward_weight(gw, gc, xc, p);
    else dispatch_floating(grad.dtype(), "conv2d_backward_weight", [&]<class T>() {
      bias_done = conv_backward_weight<T>(gc.data<T>(), xc.data<T>(), gw.data<T>(),
                                          bias_grad ? bias_grad->data<T>() : nullptr, g);
    });
  }
  if (bias_grad && !bias_done) *bias_grad = reduce(Reduce::Sum, grad, {0, 2, 3}, false);
  return gw;
}

}  // namespace weft::raw
