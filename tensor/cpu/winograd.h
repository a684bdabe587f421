// Winograd's minimal filtering F(2x2, 3x3): a 3x3, stride-1 convolution in 2.25x fewer
// multiplications than im2col + GEMM, for the convolution and its input gradient.
//
// A 2x2 block of outputs of one 3x3 filter needs a 4x4 block d of input. Written with
// three small constant matrices (Lavin and Gray, "Fast Algorithms for Convolutional
// Neural Networks", 2015),
//     y (2x2) = A^T [ (G g G^T) (.) (B^T d B) ] A          (.) = elementwise product
// where g is the 3x3 filter. G g G^T (4x4) is computed once per filter, B^T d B (4x4)
// once per input tile, and the 16 elementwise products summed over input channels are 16
// independent matrix products, one per position xi of the 4x4 tile:
//     M[xi] (K, tiles) = U[xi] (K, C) @ V[xi] (C, tiles)
//     U[xi][k][c] = (G g_kc G^T)[xi],   V[xi][c][t] = (B^T d_ct B)[xi]
// 16 * K * C multiply-adds per tile of 4 outputs, against 9 * K * C * 4 = 36 * K * C for
// im2col: 2.25x fewer. The transforms are additions (and halvings), so F(2x2, 3x3) is
// accurate to a few float32 ulps; larger tiles (F(4x4, 3x3)) save more but lose accuracy.
//
// The input gradient of a stride-1 3x3 convolution is itself one: the output gradient
// convolved with the filters rotated by 180 degrees and with input and output channels
// swapped, padded by 2 - padding. So both run through winograd_conv.
//
// The weight gradient follows from the same formula by the chain rule. With U = G g G^T
// and V = B^T d B for a tile, dL/dU = V (.) (A dY A^T) for its 2x2 output gradient dY,
// summed over tiles, and dL/dg = G^T (dL/dU) G. The sum over tiles is again 16 matrix
// products, one per xi:
//     dU[xi] (K, C) = sum over tiles of Y[xi] (K, tiles) @ V[xi]^T (tiles, C),
//     Y[xi][k][t] = (A dY_kt A^T)[xi]
// with the same 2.25x fewer multiply-adds than im2col's grad (K, Ho*Wo) @ cols^T.
#pragma once

#include <cstdint>

namespace weft::raw {

// One stride-1, dilation-1, ungrouped 3x3 convolution:
// x (N,C,H,W) * w (K,C,3,3) + b (K) -> out (N,K,Ho,Wo), Ho = H + 2*ph - 2, Wo = W + 2*pw - 2.
struct Winograd3x3 {
  int64_t N, C, H, W, K, ph, pw;
  int64_t Ho() const { return H + 2 * ph - 2; }
  int64_t Wo() const { return W + 2 * pw - 2; }
};

// out (N,K,Ho,Wo) = conv(x, w) + b; b may be null. Contiguous arrays.
template <class T>
void winograd_conv(const T* x, const T* w, const T* b, T* out, const Winograd3x3& g);

// gx (N,C,H,W) = the input gradient of winograd_conv's convolution for its output
// gradient grad (N,K,Ho,Wo); needs ph, pw <= 2.
template <class T>
void winograd_conv_backward_input(const T* grad, const T* w, T* gx, const Winograd3x3& g);

// gw (K,C,3,3) = the weight gradient of winograd_conv's convolution of x (N,C,H,W) for
// its output gradient grad (N,K,Ho,Wo). Samples are split into min(N, 4 threads) fixed
// runs, each with its own accumulator, added in order: the result does not depend on
// which thread ran which run.
template <class T>
void winograd_conv_backward_weight(const T* grad, const T* x, T* gw, const Winograd3x3& g);

}  // namespace weft::raw
