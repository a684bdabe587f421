// conv2d on the GPU without cuDNN: im2col (kernels/im2col.cu) then one cuBLAS GEMM per
// image and group. Slower than cuDNN, simple, and a check on it in the tests.
//
//   forward:  out[n][g] (Kg, Ho*Wo)       = w[g] (Kg, Cg*kh*kw) @ cols[n][g] (Cg*kh*kw, Ho*Wo)
//   dx:       cols[n][g]                  = w[g]^T @ grad[n][g];  dx[n] = col2im(cols[n])
//   dw:       dw[g] += grad[n][g] @ cols[n][g]^T, summed over the images n
#include "../tensor/views.h"
#include "../tensor/creation.h"
#include "detail.h"
#include "kernels/im2col.h"
#include "ops.h"

namespace weft::cuda {

namespace {

ConvGeometry geometry(const Shape& xs, const Shape& ws, const Shape& ys, const Conv2dParams& p) {
  return {int(xs[1]),       int(xs[2]),       int(xs[3]),       int(ws[2]),         int(ws[3]),
          int(ys[2]),       int(ys[3]),       int(p.stride[0]), int(p.stride[1]),   int(p.padding[0]),
          int(p.padding[1]), int(p.dilation[0]), int(p.dilation[1])};
}

void im2col_t(const Tensor& x_img, const Tensor& cols, const ConvGeometry& g) {
  if (x_img.dtype() == kFloat64) im2col(x_img.data<double>(), cols.data<double>(), g);
  else im2col(x_img.data<float>(), cols.data<float>(), g);
}

}  // namespace

void conv2d_im2col(const Tensor& out, const Tensor& x_in, const Tensor& w_in, const Tensor& bias,
                   const Conv2dParams& p) {
  const Tensor x = raw::contiguous(x_in), w = raw::contiguous(w_in);
  const ConvGeometry g = geometry(x.shape(), w.shape(), out.shape(), p);
  const int64_t N = x.shape()[0], K = w.shape()[0], G = p.groups, Kg = K / G, Cg = g.C / G;
  const int64_t taps = Cg * g.kh * g.kw, spatial = int64_t(g.Ho) * g.Wo;
  Tensor cols = empty({G, taps, spatial}, x.dtype(), x.device());
  const Tensor wg = views::view(w, {G, Kg, taps});
  for (int64_t n = 0; n < N; ++n) {
    im2col_t(views::select(x, 0, n), cols, g);
    const Tensor out_n = views::view(views::select(out, 0, n), {G, Kg, spatial});
    for (int64_t gi = 0; gi < G; ++gi)
      gemm(views::select(out_n, 0, gi), views::select(wg, 0, gi), views::select(cols, 0, gi));
  }
  if (bias.defined()) raw::binary_(raw::Binary::Add, out, views::view(bias, {1, K, 1, 1}));
}

void conv2d_backward_input_im2col(const Tensor& gx, const Tensor& grad_in, const Tensor& w_in,
                                  const Conv2dParams& p) {
  const Tensor grad = raw::contiguous(grad_in), w = raw::contiguous(w_in);
  const ConvGeometry g = geometry(gx.shape(), w.shape(), grad.shape(), p);
  const int64_t N = gx.shape()[0], K = w.shape()[0], G = p.groups, Kg = K / G, Cg = g.C / G;
  const int64_t taps = Cg * g.kh * g.kw, spatial = int64_t(g.Ho) * g.Wo;
  Tensor cols = empty({G, taps, spatial}, gx.dtype(), gx.device());
  const Tensor wg = views::view(w, {G, Kg, taps});
  for (int64_t n = 0; n < N; ++n) {
    const Tensor grad_n = views::view(views::select(grad, 0, n), {G, Kg, spatial});
    for (int64_t gi = 0; gi < G; ++gi)
      gemm(views::select(cols, 0, gi), views::t(views::select(wg, 0, gi)), views::select(grad_n, 0, gi));
    const Tensor gx_n = views::select(gx, 0, n);
    if (gx.dtype() == kFloat64) col2im(cols.data<double>(), gx_n.data<double>(), g);
    else col2im(cols.data<float>(), gx_n.data<float>(), g);
  }
}

void conv2d_backward_weight_im2col(const Tensor& gw, const Tensor& grad_in, const Tensor& x_in,
                                   const Conv2dParams& p) {
  const Tensor grad = raw::contiguous(grad_in), x = raw::contiguous(x_in);
  const ConvGeometry g = geometry(x.shape(), gw.shape(), grad.shape(), p);
  const int64_t N = x.shape()[0], K = gw.shape()[0], G = p.groups, Kg = K / G, Cg = g.C / G;
  const int64_t taps = Cg * g.kh * g.kw, spatial = int64_t(g.Ho) * g.Wo;
  Tensor cols = empty({G, taps, spatial}, x.dtype(), x.device());
  Tensor part = empty({Kg, taps}, x.dtype(), x.device());
  raw::fill_(gw, 0);
  const Tensor gwg = views::view(gw, {G, Kg, taps});
  for (int64_t n = 0; n < N; ++n) {
    im2col_t(views::select(x, 0, n), cols, g);
    const Tensor grad_n = views::view(views::select(grad, 0, n), {G, Kg, spatial});
    for (int64_t gi = 0; gi < G; ++gi) {
      gemm(part, views::select(grad_n, 0, gi), views::t(views::select(cols, 0, gi)));
      raw::axpy_(views::select(gwg, 0, gi), 1.0, part);
    }
  }
}

}  // namespace weft::cuda
