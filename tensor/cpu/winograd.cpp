// F(2x2, 3x3) Winograd convolution on the CPU. See winograd.h for the algorithm.
//
// Work is split over samples: each thread takes a run of samples and walks it a few
// samples at a time, so that the transformed tiles V (16, C, tiles) and the products
// M (16, K, tiles) of those samples stay in the core's L2 cache between the three stages.
#include "winograd.h"

#include <algorithm>
#include <vector>

#include "../thread_pool.h"
#include "gemm.h"

namespace weft::raw {

namespace {

// Tiles per GEMM: enough columns for the GEMM to run near its peak, few enough that V
// and M of one chunk fit in L2 (measured best between ~100 and ~250 on the sample CNN).
constexpr int64_t kTilesPerChunk = 196;

// U (16, K, C): U[xi][k][c] = (G g G^T)[xi] for the 3x3 filter g = w[k][c], with
// G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1].
template <class T>
std::vector<T> transform_filters(const T* w, int64_t K, int64_t C) {
  std::vector<T> u(16 * K * C);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c) {
      const T* g = w + (k * C + c) * 9;
      T gg[4][3];  // G g: (4, 3)
      for (int j = 0; j < 3; ++j) {
        gg[0][j] = g[j];
        gg[1][j] = (g[j] + g[3 + j] + g[6 + j]) / 2;
        gg[2][j] = (g[j] - g[3 + j] + g[6 + j]) / 2;
        gg[3][j] = g[6 + j];
      }
      for (int i = 0; i < 4; ++i) {  // (G g) G^T: (4, 4)
        const T row[4] = {gg[i][0], (gg[i][0] + gg[i][1] + gg[i][2]) / 2, (gg[i][0] - gg[i][1] + gg[i][2]) / 2,
                          gg[i][2]};
        for (int j = 0; j < 4; ++j) u[((i * 4 + j) * K + k) * C + c] = row[j];
      }
    }
  return u;
}

// V[xi][c][t0 + t] = (B^T d B)[xi] for each 4x4 input tile d of samples [n0, n0+ns), with
// B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]. Tile (th, tw) reads input rows
// 2 th - ph .. +3 and columns 2 tw - pw .. +3; outside the image reads 0 (padding).
template <class T>
void transform_inputs(const T* x, int64_t n0, int64_t ns, const Winograd3x3& g, int64_t tiles_h, int64_t tiles_w,
                      T* v) {
  const int64_t tiles = ns * tiles_h * tiles_w;
  for (int64_t s = 0; s < ns; ++s)
    for (int64_t c = 0; c < g.C; ++c) {
      const T* plane = x + ((n0 + s) * g.C + c) * g.H * g.W;
      for (int64_t th = 0; th < tiles_h; ++th)
        for (int64_t tw = 0; tw < tiles_w; ++tw) {
          T d[4][4];
          const int64_t h0 = 2 * th - g.ph, w0 = 2 * tw - g.pw;
          if (h0 >= 0 && w0 >= 0 && h0 + 4 <= g.H && w0 + 4 <= g.W) {  // inside the image
            for (int i = 0; i < 4; ++i)
              for (int j = 0; j < 4; ++j) d[i][j] = plane[(h0 + i) * g.W + w0 + j];
          } else {  // on the border: padding reads 0
            for (int i = 0; i < 4; ++i)
              for (int j = 0; j < 4; ++j) {
                const int64_t ih = h0 + i, iw = w0 + j;
                d[i][j] = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W ? plane[ih * g.W + iw] : T(0);
              }
          }
          T bd[4][4];  // B^T d
          for (int j = 0; j < 4; ++j) {
            bd[0][j] = d[0][j] - d[2][j];
            bd[1][j] = d[1][j] + d[2][j];
            bd[2][j] = d[2][j] - d[1][j];
            bd[3][j] = d[1][j] - d[3][j];
          }
          const int64_t t = (s * tiles_h + th) * tiles_w + tw;
          T* out = v + c * tiles + t;
          const int64_t step = g.C * tiles;  // from one xi to the next
          for (int i = 0; i < 4; ++i) {  // (B^T d) B
            out[(i * 4 + 0) * step] = bd[i][0] - bd[i][2];
            out[(i * 4 + 1) * step] = bd[i][1] + bd[i][2];
            out[(i * 4 + 2) * step] = bd[i][2] - bd[i][1];
            out[(i * 4 + 3) * step] = bd[i][1] - bd[i][3];
          }
        }
    }
}

// out[n0 + s][k] tile (th, tw) = A^T m A + b[k] for m[xi] = M[xi][k][t], with
// A^T = [1 1 1 0; 0 1 -1 -1]; the half of a last tile that falls outside Ho or Wo is
// dropped.
template <class T>
void transform_outputs(const T* m, const T* b, int64_t n0, int64_t ns, const Winograd3x3& g, int64_t tiles_h,
                       int64_t tiles_w, T* out) {
  const int64_t tiles = ns * tiles_h * tiles_w, Ho = g.Ho(), Wo = g.Wo();
  const int64_t step = g.K * tiles;
  for (int64_t s = 0; s < ns; ++s)
    for (int64_t k = 0; k < g.K; ++k) {
      T* plane = out + ((n0 + s) * g.K + k) * Ho * Wo;
      const T bias = b ? b[k] : T(0);
      for (int64_t th = 0; th < tiles_h; ++th)
        for (int64_t tw = 0; tw < tiles_w; ++tw) {
          const int64_t t = (s * tiles_h + th) * tiles_w + tw;
          const T* in = m + k * tiles + t;
          T am[2][4];  // A^T m
          for (int j = 0; j < 4; ++j) {
            const T m0 = in[j * step], m1 = in[(4 + j) * step], m2 = in[(8 + j) * step], m3 = in[(12 + j) * step];
            am[0][j] = m0 + m1 + m2;
            am[1][j] = m1 - m2 - m3;
          }
          for (int i = 0; i < 2; ++i) {
            const int64_t oh = 2 * th + i;
            if (oh >= Ho) break;
            const T y0 = am[i][0] + am[i][1] + am[i][2] + bias, y1 = am[i][1] - am[i][2] - am[i][3] + bias;
            plane[oh * Wo + 2 * tw] = y0;
            if (2 * tw + 1 < Wo) plane[oh * Wo + 2 * tw + 1] = y1;
          }
        }
    }
}

}  // namespace

template <class T>
void winograd_conv(const T* x, const T* w, const T* b, T* out, const Winograd3x3& g) {
  const int64_t tiles_h = (g.Ho() + 1) / 2, tiles_w = (g.Wo() + 1) / 2;
  const int64_t per_sample = tiles_h * tiles_w;
  const int64_t chunk = std::max<int64_t>(1, kTilesPerChunk / per_sample);  // samples per chunk
  const std::vector<T> u = transform_filters(w, g.K, g.C);
  parallel_for(0, g.N, 1, [&](int64_t s0, int64_t s1) {
    std::vector<T> v(16 * g.C * chunk * per_sample), m(16 * g.K * chunk * per_sample);
    for (int64_t n0 = s0; n0 < s1; n0 += chunk) {
      const int64_t ns = std::min(chunk, s1 - n0), tiles = ns * per_sample;
      transform_inputs(x, n0, ns, g, tiles_h, tiles_w, v.data());
      for (int64_t xi = 0; xi < 16; ++xi)  // M[xi] (K, tiles) = U[xi] (K, C) @ V[xi] (C, tiles)
        cpu::gemm<T>(false, false, g.K, tiles, g.C, T(1), u.data() + xi * g.K * g.C, g.C, v.data() + xi * g.C * tiles,
                     tiles, T(0), m.data() + xi * g.K * tiles, tiles);
      transform_outputs(m.data(), b, n0, ns, g, tiles_h, tiles_w, out);
    }
  });
}

template <class T>
void winograd_conv_backward_input(const T* grad, const T* w, T* gx, const Winograd3x3& g) {
  // w' (C, K, 3, 3): w'[c][k][i][j] = w[k][c][2-i][2-j], the filters rotated by 180
  // degrees with input and output channels swapped.
  std::vector<T> wr(g.C * g.K * 9);
  for (int64_t k = 0; k < g.K; ++k)
    for (int64_t c = 0; c < g.C; ++c)
      for (int i = 0; i < 9; ++i) wr[(c * g.K + k) * 9 + i] = w[(k * g.C + c) * 9 + (8 - i)];
  const Winograd3x3 t{g.N, g.K, g.Ho(), g.Wo(), g.C, 2 - g.ph, 2 - g.pw};  // its Ho() is H, its Wo() is W
  winograd_conv<T>(grad, wr.data(), nullptr, gx, t);
}

template void winograd_conv<float>(const float*, const float*, const float*, float*, const Winograd3x3&);
template void winograd_conv<double>(const double*, const double*, const double*, double*, const Winograd3x3&);
template void winograd_conv_backward_input<float>(const float*, const float*, float*, const Winograd3x3&);
template void winograd_conv_backward_input<double>(const double*, const double*, double*, const Winograd3x3&);

}  // namespace weft::raw
