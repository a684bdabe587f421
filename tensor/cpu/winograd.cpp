// F(2x2, 3x3) Winograd convolution on the CPU. See winograd.h for the algorithm.
//
// Work is split over samples: each thread takes a run of samples and walks it a few
// samples at a time, so that the transformed tiles V (16, C, tiles) and the products
// M (16, K, tiles) of those samples stay in the core's L2 cache between the three stages.
//
// The two tile transforms are SIMD over 8 neighbouring tiles of a tile row (float32; the
// float64 twins, used by gradcheck, are plain loops). Tile (th, tw) reads input columns
// 2 tw .. 2 tw + 3 of the padded plane, so 8 neighbouring tiles read every other column:
// the padded plane is split once into its even and odd columns, after which tile tw's
// four columns are even[tw], odd[tw], even[tw + 1] and odd[tw + 1], four contiguous
// 8-float loads for 8 tiles. Vector stores run up to 7 tiles past a tile row; the rows of
// V and M have 8 spare floats at the end (ld = tiles + 8) for that, and a row's spill into
// the next tile row is overwritten when that row is transformed.
#include "winograd.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstring>
#include <vector>

#include "../thread_pool.h"
#include "gemm.h"

namespace weft::raw {

namespace {

// Tiles per GEMM: enough columns for the GEMM to run near its peak, few enough that V
// and M of one chunk fit in L2 (measured best between ~100 and ~250 on the sample CNN).
constexpr int64_t kTilesPerChunk = 196;
constexpr int64_t kLanes = 8;  // tiles per SIMD step (8 floats: 256 bits)

// The tile grid of a chunk of samples, and the row stride of V and M.
struct Tiles {
  int64_t h, w;  // tiles per column and per row of one sample
  int64_t count;  // tiles in the chunk: samples * h * w
  int64_t ld;     // count + kLanes spare floats (see the top of the file)
};

// Eight floats as one SIMD value (GCC/Clang vector extension): + and - act lane by lane.
// aligned(4): loads and stores may sit at any float boundary.
typedef float Vec8 __attribute__((vector_size(32), aligned(4)));
inline Vec8 load8(const float* p) { return *reinterpret_cast<const Vec8*>(p); }
inline void store8(float* p, Vec8 v) { *reinterpret_cast<Vec8*>(p) = v; }

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

// V[xi][c][t] = (B^T d B)[xi] for each 4x4 input tile d of samples [n0, n0+ns), with
// B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]. Tile (th, tw) of sample s is
// t = (s * tiles.h + th) * tiles.w + tw and reads input rows 2 th - ph .. +3 and columns
// 2 tw - pw .. +3; outside the image reads 0 (padding). The plain version (float64).
template <class T>
void transform_inputs(const T* x, int64_t n0, int64_t ns, const Winograd3x3& g, const Tiles& tl, T* v) {
  const int64_t step = g.C * tl.ld;  // from one xi to the next
  for (int64_t s = 0; s < ns; ++s)
    for (int64_t c = 0; c < g.C; ++c) {
      const T* plane = x + ((n0 + s) * g.C + c) * g.H * g.W;
      for (int64_t th = 0; th < tl.h; ++th)
        for (int64_t tw = 0; tw < tl.w; ++tw) {
          T d[4][4];
          for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) {
              const int64_t ih = 2 * th - g.ph + i, iw = 2 * tw - g.pw + j;
              d[i][j] = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W ? plane[ih * g.W + iw] : T(0);
            }
          T bd[4][4];  // B^T d
          for (int j = 0; j < 4; ++j) {
            bd[0][j] = d[0][j] - d[2][j];
            bd[1][j] = d[1][j] + d[2][j];
            bd[2][j] = d[2][j] - d[1][j];
            bd[3][j] = d[1][j] - d[3][j];
          }
          T* out = v + c * tl.ld + (s * tl.h + th) * tl.w + tw;
          for (int i = 0; i < 4; ++i) {  // (B^T d) B
            out[(i * 4 + 0) * step] = bd[i][0] - bd[i][2];
            out[(i * 4 + 1) * step] = bd[i][1] + bd[i][2];
            out[(i * 4 + 2) * step] = bd[i][2] - bd[i][1];
            out[(i * 4 + 3) * step] = bd[i][1] - bd[i][3];
          }
        }
    }
}

// even[q] = row[2 q - pw], odd[q] = row[2 q + 1 - pw] for q in [0, half) of input row ih
// of `plane`, 0 outside the image. The loops in the middle have no branches, so they
// vectorise (this split was the costliest part of the transform while it had them).
void split_row(const float* plane, int64_t ih, const Winograd3x3& g, int64_t half, float* even, float* odd) {
  std::fill_n(even, half, 0.0f);
  std::fill_n(odd, half, 0.0f);
  if (ih < 0 || ih >= g.H) return;
  const float* __restrict row = plane + ih * g.W;
  // q with 0 <= 2 q + s - pw < W, for s = 0 (even) and 1 (odd).
  auto first = [&](int64_t s) { return std::max<int64_t>(0, (g.pw - s + 1) / 2); };
  auto last = [&](int64_t s) { return std::min<int64_t>(half, (g.W + g.pw - s + 1) / 2); };
  float* __restrict e = even;
  float* __restrict o = odd;
  for (int64_t q = first(0); q < last(0); ++q) e[q] = row[2 * q - g.pw];
  for (int64_t q = first(1); q < last(1); ++q) o[q] = row[2 * q + 1 - g.pw];
}

// The same for float32, 8 tiles of a tile row at a time (see the top of the file).
void transform_inputs(const float* x, int64_t n0, int64_t ns, const Winograd3x3& g, const Tiles& tl, float* v) {
  const int64_t step = g.C * tl.ld;
  // The padded plane's even and odd columns: rows 2 tiles.h + 2, each `half` floats,
  // enough for every 8-tile step and its one-column shift (zeros beyond the image).
  const int64_t rows = 2 * tl.h + 2, half = (tl.w + kLanes - 1) / kLanes * kLanes + 1;
  std::vector<float> even(rows * half), odd(rows * half);
  for (int64_t s = 0; s < ns; ++s)
    for (int64_t c = 0; c < g.C; ++c) {
      const float* plane = x + ((n0 + s) * g.C + c) * g.H * g.W;
      for (int64_t y = 0; y < rows; ++y) split_row(plane, y - g.ph, g, half, &even[y * half], &odd[y * half]);
      for (int64_t th = 0; th < tl.h; ++th) {
        float* out = v + c * tl.ld + (s * tl.h + th) * tl.w;
        for (int64_t q0 = 0; q0 < tl.w; q0 += kLanes) {
          // Column j of the 8 tiles: j = 0 even[q0], 1 odd[q0], 2 even[q0 + 1], 3 odd[q0 + 1].
          Vec8 col[4][4];  // [j][i]: input row 2 th + i
          for (int i = 0; i < 4; ++i) {
            const int64_t r = (2 * th + i) * half + q0;
            col[0][i] = load8(&even[r]), col[1][i] = load8(&odd[r]);
            col[2][i] = load8(&even[r + 1]), col[3][i] = load8(&odd[r + 1]);
          }
          Vec8 bd[4][4];  // B^T d: [i][j]
          for (int j = 0; j < 4; ++j) {
            bd[0][j] = col[j][0] - col[j][2];
            bd[1][j] = col[j][1] + col[j][2];
            bd[2][j] = col[j][2] - col[j][1];
            bd[3][j] = col[j][1] - col[j][3];
          }
          for (int i = 0; i < 4; ++i) {  // (B^T d) B
            store8(out + (i * 4 + 0) * step + q0, bd[i][0] - bd[i][2]);
            store8(out + (i * 4 + 1) * step + q0, bd[i][1] + bd[i][2]);
            store8(out + (i * 4 + 2) * step + q0, bd[i][2] - bd[i][1]);
            store8(out + (i * 4 + 3) * step + q0, bd[i][1] - bd[i][3]);
          }
        }
      }
    }
}

// out[n0 + s][k] tile (th, tw) = A^T m A + b[k] for m[xi] = M[xi][k][t], with
// A^T = [1 1 1 0; 0 1 -1 -1]; the half of a last tile that falls outside Ho or Wo is
// dropped. The plain version (float64).
template <class T>
void transform_outputs(const T* m, const T* b, int64_t n0, int64_t ns, const Winograd3x3& g, const Tiles& tl,
                       T* out) {
  const int64_t Ho = g.Ho(), Wo = g.Wo(), step = g.K * tl.ld;
  for (int64_t s = 0; s < ns; ++s)
    for (int64_t k = 0; k < g.K; ++k) {
      T* plane = out + ((n0 + s) * g.K + k) * Ho * Wo;
      const T bias = b ? b[k] : T(0);
      for (int64_t th = 0; th < tl.h; ++th)
        for (int64_t tw = 0; tw < tl.w; ++tw) {
          const T* in = m + k * tl.ld + (s * tl.h + th) * tl.w + tw;
          T am[2][4];  // A^T m
          for (int j = 0; j < 4; ++j) {
            const T m0 = in[j * step], m1 = in[(4 + j) * step], m2 = in[(8 + j) * step], m3 = in[(12 + j) * step];
            am[0][j] = m0 + m1 + m2;
            am[1][j] = m1 - m2 - m3;
          }
          for (int i = 0; i < 2; ++i) {
            const int64_t oh = 2 * th + i;
            if (oh >= Ho) break;
            plane[oh * Wo + 2 * tw] = am[i][0] + am[i][1] + am[i][2] + bias;
            if (2 * tw + 1 < Wo) plane[oh * Wo + 2 * tw + 1] = am[i][1] - am[i][2] - am[i][3] + bias;
          }
        }
    }
}

// dst[0, n) = the first n of the 16 floats lo:hi (n <= 16).
inline void store_first(float* dst, Vec8 lo, Vec8 hi, int64_t n) {
#if defined(__AVX512F__)
  // (insertf64x4 on the bits: insertf32x8 would need AVX512DQ.)
  const __m512 v = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(
                                                           reinterpret_cast<__m256>(lo))),
                                                       _mm256_castps_pd(reinterpret_cast<__m256>(hi)), 1));
  _mm512_mask_storeu_ps(dst, static_cast<__mmask16>((1u << n) - 1), v);
#else
  float tmp[16];
  std::memcpy(tmp, &lo, sizeof lo);
  std::memcpy(tmp + 8, &hi, sizeof hi);
  for (int64_t i = 0; i < n; ++i) dst[i] = tmp[i];
#endif
}

// The same for float32, 8 tiles of a tile row at a time. The two outputs a tile gives
// each output row interleave: tile tw writes columns 2 tw and 2 tw + 1.
void transform_outputs(const float* m, const float* b, int64_t n0, int64_t ns, const Winograd3x3& g, const Tiles& tl,
                       float* out) {
  const int64_t Ho = g.Ho(), Wo = g.Wo(), step = g.K * tl.ld;
  for (int64_t s = 0; s < ns; ++s)
    for (int64_t k = 0; k < g.K; ++k) {
      float* plane = out + ((n0 + s) * g.K + k) * Ho * Wo;
      const Vec8 bias = Vec8{} + (b ? b[k] : 0.0f);
      for (int64_t th = 0; th < tl.h; ++th) {
        const float* in = m + k * tl.ld + (s * tl.h + th) * tl.w;
        for (int64_t q0 = 0; q0 < tl.w; q0 += kLanes) {
          Vec8 am[2][4];  // A^T m
          for (int j = 0; j < 4; ++j) {
            const Vec8 m0 = load8(in + j * step + q0), m1 = load8(in + (4 + j) * step + q0),
                       m2 = load8(in + (8 + j) * step + q0), m3 = load8(in + (12 + j) * step + q0);
            am[0][j] = m0 + m1 + m2;
            am[1][j] = m1 - m2 - m3;
          }
          const int64_t cols = std::min<int64_t>(2 * kLanes, Wo - 2 * q0);  // output columns of these 8 tiles
          for (int i = 0; i < 2; ++i) {
            const int64_t oh = 2 * th + i;
            if (oh >= Ho) break;
            const Vec8 y0 = am[i][0] + am[i][1] + am[i][2] + bias, y1 = am[i][1] - am[i][2] - am[i][3] + bias;
            // Interleave: columns 2 q0 .. 2 q0 + 15 are y0[0] y1[0] y0[1] y1[1] ...
            const Vec8 lo = __builtin_shufflevector(y0, y1, 0, 8, 1, 9, 2, 10, 3, 11);
            const Vec8 hi = __builtin_shufflevector(y0, y1, 4, 12, 5, 13, 6, 14, 7, 15);
            float* dst = plane + oh * Wo + 2 * q0;
            if (cols == 2 * kLanes) store8(dst, lo), store8(dst + kLanes, hi);
            else store_first(dst, lo, hi, cols);
          }
        }
      }
    }
}

// Y[xi][k][t] = (A dY A^T)[xi] for the 2x2 output-gradient tile dY of each tile t of
// samples [n0, n0+ns), with A = (A^T)^T = [1 0; 1 1; 1 -1; 0 -1]; the part of a last
// tile outside Ho or Wo reads 0 (those outputs do not exist). The plain version.
template <class T>
void transform_output_grads(const T* grad, int64_t n0, int64_t ns, const Winograd3x3& g, const Tiles& tl, T* y) {
  const int64_t Ho = g.Ho(), Wo = g.Wo(), step = g.K * tl.ld;
  for (int64_t s = 0; s < ns; ++s)
    for (int64_t k = 0; k < g.K; ++k) {
      const T* plane = grad + ((n0 + s) * g.K + k) * Ho * Wo;
      for (int64_t th = 0; th < tl.h; ++th)
        for (int64_t tw = 0; tw < tl.w; ++tw) {
          T d[2][2];
          for (int a = 0; a < 2; ++a)
            for (int b = 0; b < 2; ++b) {
              const int64_t oh = 2 * th + a, ow = 2 * tw + b;
              d[a][b] = oh < Ho && ow < Wo ? plane[oh * Wo + ow] : T(0);
            }
          T out[4][4];
          for (int b = 0; b < 2; ++b) {  // A dY: (4, 2), then (A dY) A^T: (4, 4)
            const T t0 = d[0][b], t1 = d[0][b] + d[1][b], t2 = d[0][b] - d[1][b], t3 = -d[1][b];
            out[0][b] = t0, out[1][b] = t1, out[2][b] = t2, out[3][b] = t3;
          }
          T* dst = y + k * tl.ld + (s * tl.h + th) * tl.w + tw;
          for (int r = 0; r < 4; ++r) {
            const T c0 = out[r][0], c1 = out[r][1];
            dst[(r * 4 + 0) * step] = c0;
            dst[(r * 4 + 1) * step] = c0 + c1;
            dst[(r * 4 + 2) * step] = c0 - c1;
            dst[(r * 4 + 3) * step] = -c1;
          }
        }
    }
}

// The same for float32, 8 tiles of a tile row at a time: the output-gradient plane is
// split into even and odd columns first (zeros past Ho and Wo), as the inputs are.
void transform_output_grads(const float* grad, int64_t n0, int64_t ns, const Winograd3x3& g, const Tiles& tl,
                            float* y) {
  const int64_t Ho = g.Ho(), Wo = g.Wo(), step = g.K * tl.ld;
  const int64_t rows = 2 * tl.h, half = (tl.w + kLanes - 1) / kLanes * kLanes;
  std::vector<float> even(rows * half), odd(rows * half);
  for (int64_t s = 0; s < ns; ++s)
    for (int64_t k = 0; k < g.K; ++k) {
      const float* plane = grad + ((n0 + s) * g.K + k) * Ho * Wo;
      std::fill(even.begin(), even.end(), 0.0f);
      std::fill(odd.begin(), odd.end(), 0.0f);
      for (int64_t r = 0; r < std::min(rows, Ho); ++r) {  // branch-free, so they vectorise
        const float* __restrict row = plane + r * Wo;
        float* __restrict e = &even[r * half];
        float* __restrict o = &odd[r * half];
        for (int64_t q = 0; q < std::min(half, (Wo + 1) / 2); ++q) e[q] = row[2 * q];
        for (int64_t q = 0; q < std::min(half, Wo / 2); ++q) o[q] = row[2 * q + 1];
      }
      for (int64_t th = 0; th < tl.h; ++th) {
        float* dst = y + k * tl.ld + (s * tl.h + th) * tl.w;
        for (int64_t q0 = 0; q0 < tl.w; q0 += kLanes) {
          const int64_t r0 = 2 * th * half + q0, r1 = r0 + half;  // output rows 2 th and 2 th + 1
          Vec8 t[4][2];  // A dY: [r][b], b = output column 2 tw + b
          const Vec8 d00 = load8(&even[r0]), d01 = load8(&odd[r0]), d10 = load8(&even[r1]), d11 = load8(&odd[r1]);
          t[0][0] = d00, t[0][1] = d01;
          t[1][0] = d00 + d10, t[1][1] = d01 + d11;
          t[2][0] = d00 - d10, t[2][1] = d01 - d11;
          t[3][0] = -d10, t[3][1] = -d11;
          for (int r = 0; r < 4; ++r) {  // (A dY) A^T
            store8(dst + (r * 4 + 0) * step + q0, t[r][0]);
            store8(dst + (r * 4 + 1) * step + q0, t[r][0] + t[r][1]);
            store8(dst + (r * 4 + 2) * step + q0, t[r][0] - t[r][1]);
            store8(dst + (r * 4 + 3) * step + q0, -t[r][1]);
          }
        }
      }
    }
}

// gw[k][c] (3x3) = G^T D G for D = dU[xi][k][c] (4x4), G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0;
// 0 1/2 1/2 1].
template <class T>
void filter_grads(const T* du, int64_t K, int64_t C, T* gw) {
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c) {
      T d[4][4];
      for (int xi = 0; xi < 16; ++xi) d[xi / 4][xi % 4] = du[(xi * K + k) * C + c];
      T e[3][4];  // G^T D
      for (int j = 0; j < 4; ++j) {
        e[0][j] = d[0][j] + (d[1][j] + d[2][j]) / 2;
        e[1][j] = (d[1][j] - d[2][j]) / 2;
        e[2][j] = (d[1][j] + d[2][j]) / 2 + d[3][j];
      }
      T* out = gw + (k * C + c) * 9;
      for (int i = 0; i < 3; ++i) {  // (G^T D) G
        out[i * 3 + 0] = e[i][0] + (e[i][1] + e[i][2]) / 2;
        out[i * 3 + 1] = (e[i][1] - e[i][2]) / 2;
        out[i * 3 + 2] = (e[i][1] + e[i][2]) / 2 + e[i][3];
      }
    }
}

// The two tile buffers of a chunk (V and M, or V and Y), kept per thread and type from
// call to call: each is about a megabyte, and with 4 chunks per thread a fresh pair for
// every chunk would be 16 large allocations per convolution. Safe to reuse because a
// chunk's body never runs another chunk (it calls nothing that enters the pool).
template <class T>
struct TileBuffers {
  std::vector<T> a, b;
};
template <class T>
TileBuffers<T>& tile_buffers(int64_t a_size, int64_t b_size) {
  thread_local TileBuffers<T> buf;
  if (static_cast<int64_t>(buf.a.size()) < a_size) buf.a.resize(a_size);
  if (static_cast<int64_t>(buf.b.size()) < b_size) buf.b.resize(b_size);
  return buf;
}

}  // namespace

template <class T>
void winograd_conv(const T* x, const T* w, const T* b, T* out, const Winograd3x3& g) {
  const int64_t th = (g.Ho() + 1) / 2, tw = (g.Wo() + 1) / 2;
  const int64_t chunk = std::max<int64_t>(1, kTilesPerChunk / (th * tw));  // samples per chunk
  const std::vector<T> u = transform_filters(w, g.K, g.C);
  parallel_for(0, g.N, 1, [&](int64_t s0, int64_t s1) {
    const int64_t ld = chunk * th * tw + kLanes;
    TileBuffers<T>& buf = tile_buffers<T>(16 * g.C * ld, 16 * g.K * ld);
    std::vector<T>& v = buf.a;
    std::vector<T>& m = buf.b;
    for (int64_t n0 = s0; n0 < s1; n0 += chunk) {
      const int64_t ns = std::min(chunk, s1 - n0);
      const Tiles tl{th, tw, ns * th * tw, ld};
      transform_inputs(x, n0, ns, g, tl, v.data());
      for (int64_t xi = 0; xi < 16; ++xi)  // M[xi] (K, tiles) = U[xi] (K, C) @ V[xi] (C, tiles)
        cpu::gemm<T>(false, false, g.K, tl.count, g.C, T(1), u.data() + xi * g.K * g.C, g.C,
                     v.data() + xi * g.C * ld, ld, T(0), m.data() + xi * g.K * ld, ld);
      transform_outputs(m.data(), b, n0, ns, g, tl, out);
    }
  }, 4);
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

template <class T>
void winograd_conv_backward_weight(const T* grad, const T* x, T* gw, const Winograd3x3& g) {
  const int64_t th = (g.Ho() + 1) / 2, tw = (g.Wo() + 1) / 2;
  const int64_t chunk = std::max<int64_t>(1, kTilesPerChunk / (th * tw));  // samples per chunk
  // 4 runs per thread, taken one at a time (see parallel_for's chunks_per_thread).
  const int64_t runs = std::min<int64_t>(g.N, 4 * num_threads());
  std::vector<std::vector<T>> acc(runs);  // dU (16, K, C) of each run of samples
  parallel_for(0, runs, 1, [&](int64_t r0, int64_t r1) {
    const int64_t ld = chunk * th * tw + kLanes;
    TileBuffers<T>& buf = tile_buffers<T>(16 * g.C * ld, 16 * g.K * ld);
    std::vector<T>& v = buf.a;
    std::vector<T>& y = buf.b;
    for (int64_t r = r0; r < r1; ++r) {
      acc[r].assign(16 * g.K * g.C, T(0));
      const int64_t first = r * g.N / runs, last = (r + 1) * g.N / runs;
      for (int64_t n0 = first; n0 < last; n0 += chunk) {
        const int64_t ns = std::min(chunk, last - n0);
        const Tiles tl{th, tw, ns * th * tw, ld};
        transform_inputs(x, n0, ns, g, tl, v.data());
        transform_output_grads(grad, n0, ns, g, tl, y.data());
        for (int64_t xi = 0; xi < 16; ++xi)  // dU[xi] (K, C) += Y[xi] (K, tiles) @ V[xi]^T (tiles, C)
          cpu::gemm<T>(false, true, g.K, g.C, tl.count, T(1), y.data() + xi * g.K * ld, ld, v.data() + xi * g.C * ld,
                       ld, T(1), acc[r].data() + xi * g.K * g.C, g.C);
      }
    }
  }, 4);
  std::vector<T> du(16 * g.K * g.C, T(0));
  for (const auto& a : acc)
    for (size_t i = 0; i < du.size(); ++i) du[i] += a[i];
  filter_grads(du.data(), g.K, g.C, gw);
}

template void winograd_conv<float>(const float*, const float*, const float*, float*, const Winograd3x3&);
template void winograd_conv<double>(const double*, const double*, const double*, double*, const Winograd3x3&);
template void winograd_conv_backward_input<float>(const float*, const float*, float*, const Winograd3x3&);
template void winograd_conv_backward_input<double>(const double*, const double*, double*, const Winograd3x3&);
template void winograd_conv_backward_weight<float>(const float*, const float*, float*, const Winograd3x3&);
template void winograd_conv_backward_weight<double>(const double*, const double*, double*, const Winograd3x3&);

}  // namespace weft::raw
