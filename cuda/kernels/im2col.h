// im2col / col2im on the GPU for one image (see im2col.cu). Internal to cuda/.
#pragma once

#include <cstdint>

namespace weft::cuda {

// One image's convolution geometry: C input channels of H x W, kernel kh x kw, output
// Ho x Wo, strides, paddings and dilations.
struct ConvGeometry {
  int C, H, W, kh, kw, Ho, Wo, sh, sw, ph, pw, dh, dw;
};

template <class T>
void im2col(const T* x, T* cols, const ConvGeometry& g);  // cols (C*kh*kw, Ho*Wo)
template <class T>
void col2im(const T* cols, T* x, const ConvGeometry& g);  // x (C, H, W) overwritten

}  // namespace weft::cuda
