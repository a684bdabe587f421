// im2col and col2im for one image, the GPU twins of the loops in tensor/cpu/conv.cpp.
//
// im2col: x (C, H, W) -> cols (C*kh*kw, Ho*Wo); cols[(c, i, j)][(oh, ow)] is the input
//   pixel that kernel tap (i, j) of channel c sees at output (oh, ow), 0 in the padding.
// col2im: the adjoint -- each input pixel sums every column entry that read it. One
//   thread per input pixel gathers its taps, so no atomics are needed.
#include "../detail.h"
#include "im2col.h"

namespace weft::cuda {

namespace {

template <class T>
__global__ void im2col_kernel(const T* __restrict__ x, T* __restrict__ cols, ConvGeometry g) {
  const int64_t spatial = int64_t(g.Ho) * g.Wo;
  const int64_t n = int64_t(g.C) * g.kh * g.kw * spatial;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int ow = int(idx % g.Wo);
    const int oh = int((idx / g.Wo) % g.Ho);
    const int64_t row = idx / spatial;  // (c, i, j)
    const int j = int(row % g.kw), i = int((row / g.kw) % g.kh), c = int(row / (int64_t(g.kw) * g.kh));
    const int h = oh * g.sh - g.ph + i * g.dh, w = ow * g.sw - g.pw + j * g.dw;
    cols[idx] = (h >= 0 && h < g.H && w >= 0 && w < g.W) ? x[(int64_t(c) * g.H + h) * g.W + w] : T(0);
  }
}

template <class T>
__global__ void col2im_kernel(const T* __restrict__ cols, T* __restrict__ x, ConvGeometry g) {
  const int64_t n = int64_t(g.C) * g.H * g.W;
  const int64_t spatial = int64_t(g.Ho) * g.Wo;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int w = int(idx % g.W), h = int((idx / g.W) % g.H), c = int(idx / (int64_t(g.W) * g.H));
    T sum = 0;
    for (int i = 0; i < g.kh; ++i) {
      const int oh_s = h + g.ph - i * g.dh;  // = oh * sh when tap i of output oh reads row h
      if (oh_s < 0 || oh_s % g.sh) continue;
      const int oh = oh_s / g.sh;
      if (oh >= g.Ho) continue;
      for (int j = 0; j < g.kw; ++j) {
        const int ow_s = w + g.pw - j * g.dw;
        if (ow_s < 0 || ow_s % g.sw) continue;
        const int ow = ow_s / g.sw;
        if (ow >= g.Wo) continue;
        sum += cols[((int64_t(c) * g.kh + i) * g.kw + j) * spatial + int64_t(oh) * g.Wo + ow];
      }
    }
    x[idx] = sum;
  }
}

}  // namespace

template <class T>
void im2col(const T* x, T* cols, const ConvGeometry& g) {
  const int64_t n = int64_t(g.C) * g.kh * g.kw * g.Ho * g.Wo;
  im2col_kernel<T><<<detail::blocks_for(n), detail::kThreads, 0, detail::stream()>>>(x, cols, g);
  WEFT_CUDA_LAUNCH_CHECK("conv2d (im2col)");
}

template <class T>
void col2im(const T* cols, T* x, const ConvGeometry& g) {
  const int64_t n = int64_t(g.C) * g.H * g.W;
  col2im_kernel<T><<<detail::blocks_for(n), detail::kThreads, 0, detail::stream()>>>(cols, x, g);
  WEFT_CUDA_LAUNCH_CHECK("conv2d_backward_input (col2im)");
}

template void im2col<float>(const float*, float*, const ConvGeometry&);
template void im2col<double>(const double*, double*, const ConvGeometry&);
template void col2im<float>(const float*, float*, const ConvGeometry&);
template void col2im<double>(const double*, double*, const ConvGeometry&);

}  // namespace weft::cuda
