// The 2x2, stride-2 max pooling of nearly every CNN, one output row at a time.
//
// r0 and r1 are two input rows (2*Wo pixels each, the rest of a row with odd W is
// ignored), o / go are one output row (Wo). Window ow holds r0[2ow], r0[2ow+1],
// r1[2ow], r1[2ow+1], scanned in that order; the first of equal values wins, and the
// last NaN does (it propagates, and the gradient goes where PyTorch sends it: see
// ew::pool_takes_over). Taking the winner of each horizontal pair and then of the two
// rows picks the same pixel as that scan.
//
// With AVX-512, 16 windows at a time: the two rows are split into even and odd pixels
// with one permute each, and the short rows of small feature maps (Wo = 14, 7) end in a
// partial group of windows instead of a scalar tail. That group is stored with masked
// stores. It is loaded with masked loads only where it must be: on the Zen 5 development
// VM masked loads ran several times slower than plain ones (these row kernels alone, over
// 128x32 planes of 28x28: backward 4.2 ms with masked loads, 0.6 ms with plain ones;
// max_pool2d_backward as a whole 2.1 -> 1.1 ms), so when the caller says `overread`
// -- reading whole vectors past the row's end stays inside the same plane -- the partial
// group is read with plain loads and the lanes past the row are ignored. The plain loops
// below compute the same thing for every other CPU and for doubles.
//
// Relu = true pools relu(x) instead of x, for the fused relu_max_pool2d: every pixel goes
// through relu (ew::Relu: x < 0 ? 0 : x, so NaN stays NaN and -0 stays -0) as it is
// loaded, and in backward a window passes its gradient on only where relu would
// (ew::relu_passes: unless its winner is <= 0, so a NaN winner does) -- exactly what relu
// followed by max pooling would do, without writing relu(x) out and reading it back.
#pragma once

#include <cstdint>
#include <type_traits>

#include "../elementwise_math.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace weft::raw::pool2x2 {

// true when a, met first in the scan, should be kept over b, met after it.
template <class T>
inline bool keeps(T a, T b) {
  return !ew::pool_takes_over(b, a);
}
template <class T>
inline T pick(T a, T b) {
  return keeps(a, b) ? a : b;
}
// A pixel as the pooling sees it.
template <bool Relu, class T>
inline T in(T v) {
  if constexpr (Relu) return ew::Relu<T>{}(v);
  return v;
}

template <bool Relu, class T>
void forward_row_plain(const T* __restrict r0, const T* __restrict r1, T* __restrict o, int64_t Wo) {
  for (int64_t ow = 0; ow < Wo; ++ow)
    o[ow] = pick(pick(in<Relu>(r0[2 * ow]), in<Relu>(r0[2 * ow + 1])),
                 pick(in<Relu>(r1[2 * ow]), in<Relu>(r1[2 * ow + 1])));
}

// d0, d1 are the gradient rows of r0, r1: each window's gradient lands on its winner,
// the other three pixels get 0 (every covered pixel is written, so no zeroing first).
template <bool Relu, class T>
void backward_row_plain(const T* __restrict r0, const T* __restrict r1, const T* __restrict go, T* __restrict d0,
                        T* __restrict d1, int64_t Wo) {
  for (int64_t ow = 0; ow < Wo; ++ow) {
    const T a0 = in<Relu>(r0[2 * ow]), b0 = in<Relu>(r0[2 * ow + 1]);
    const T a1 = in<Relu>(r1[2 * ow]), b1 = in<Relu>(r1[2 * ow + 1]);
    const bool left0 = keeps(a0, b0), left1 = keeps(a1, b1);
    const T h0 = left0 ? a0 : b0, h1 = left1 ? a1 : b1;
    const bool top = keeps(h0, h1);
    const T g = !Relu || ew::relu_passes(top ? h0 : h1) ? go[ow] : T(0);
    d0[2 * ow] = (top & left0) ? g : T(0);
    d0[2 * ow + 1] = (top & !left0) ? g : T(0);
    d1[2 * ow] = (!top & left1) ? g : T(0);
    d1[2 * ow + 1] = (!top & !left1) ? g : T(0);
  }
}

#if defined(__AVX512F__)
namespace avx512 {

// keeps() above, 16 lanes: b is not > a (true when either is NaN) and b is not NaN.
inline __mmask16 keeps(__m512 a, __m512 b) {
  return _mm512_cmp_ps_mask(b, a, _CMP_NGT_UQ) & _mm512_cmp_ps_mask(b, b, _CMP_ORD_Q);
}
inline __mmask16 low_bits(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }

// The 32 pixels [2*ow0, 2*ow0 + 32) of a row, as its even and its odd pixels (16 each).
// `n` windows are real; the lanes past them hold zeros (masked loads) or whatever lies
// past the row (`whole`: the caller knows all 32 pixels are readable).
template <bool Relu>
inline void load_pairs(const float* row, int64_t n, bool whole, __m512& even, __m512& odd) {
  const __m512i even_idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd_idx = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  __m512 a, b;
  if (whole || n == 16) {
    a = _mm512_loadu_ps(row), b = _mm512_loadu_ps(row + 16);
  } else {
    a = _mm512_maskz_loadu_ps(low_bits(2 * n), row);
    b = _mm512_maskz_loadu_ps(low_bits(2 * n - 16 > 0 ? 2 * n - 16 : 0), row + 16);
  }
  even = _mm512_permutex2var_ps(a, even_idx, b);
  odd = _mm512_permutex2var_ps(a, odd_idx, b);
  if constexpr (Relu) {  // max(0, x) is 0 > x ? 0 : x, ew::Relu: NaN and -0 pass through
    even = _mm512_max_ps(_mm512_setzero_ps(), even);
    odd = _mm512_max_ps(_mm512_setzero_ps(), odd);
  }
}

// The inverse of load_pairs: interleaves even and odd back into 2*n pixels of row.
inline void store_pairs(float* row, int64_t n, __m512 even, __m512 odd) {
  const __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi_idx = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  _mm512_mask_storeu_ps(row, low_bits(2 * n), _mm512_permutex2var_ps(even, lo_idx, odd));
  if (2 * n > 16) _mm512_mask_storeu_ps(row + 16, low_bits(2 * n - 16), _mm512_permutex2var_ps(even, hi_idx, odd));
}

template <bool Relu>
inline void forward_row(const float* r0, const float* r1, float* o, int64_t Wo, bool overread) {
  for (int64_t ow = 0; ow < Wo; ow += 16) {
    const int64_t n = Wo - ow < 16 ? Wo - ow : 16;
    __m512 e0, o0, e1, o1;
    load_pairs<Relu>(r0 + 2 * ow, n, overread, e0, o0);
    load_pairs<Relu>(r1 + 2 * ow, n, overread, e1, o1);
    const __m512 h0 = _mm512_mask_blend_ps(keeps(e0, o0), o0, e0);
    const __m512 h1 = _mm512_mask_blend_ps(keeps(e1, o1), o1, e1);
    _mm512_mask_storeu_ps(o + ow, low_bits(n), _mm512_mask_blend_ps(keeps(h0, h1), h1, h0));
  }
}

template <bool Relu>
inline void backward_row(const float* r0, const float* r1, const float* go, float* d0, float* d1, int64_t Wo,
                         bool overread) {
  for (int64_t ow = 0; ow < Wo; ow += 16) {
    const int64_t n = Wo - ow < 16 ? Wo - ow : 16;
    __m512 e0, o0, e1, o1;
    load_pairs<Relu>(r0 + 2 * ow, n, overread, e0, o0);
    load_pairs<Relu>(r1 + 2 * ow, n, overread, e1, o1);
    const __mmask16 left0 = keeps(e0, o0), left1 = keeps(e1, o1);
    const __m512 h0 = _mm512_mask_blend_ps(left0, o0, e0), h1 = _mm512_mask_blend_ps(left1, o1, e1);
    const __mmask16 top = keeps(h0, h1);
    // Lanes past n are never stored, so what an overread puts in them does not matter.
    __m512 g = overread || n == 16 ? _mm512_loadu_ps(go + ow) : _mm512_maskz_loadu_ps(low_bits(n), go + ow);
    if constexpr (Relu) {  // ew::relu_passes: the window's winner is not <= 0 (NaN is not)
      const __m512 win = _mm512_mask_blend_ps(top, h1, h0);
      g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(win, _mm512_setzero_ps(), _CMP_NLE_UQ), g);
    }
    store_pairs(d0 + 2 * ow, n, _mm512_maskz_mov_ps(top & left0, g), _mm512_maskz_mov_ps(top & ~left0, g));
    store_pairs(d1 + 2 * ow, n, _mm512_maskz_mov_ps(~top & left1, g), _mm512_maskz_mov_ps(~top & ~left1, g));
  }
}

}  // namespace avx512
#endif

// `overread`: the 32 pixels from the start of the last group of windows in r0 and in r1,
// and the 16 values from its start in go, may all be read (they lie inside the tensor).
// The caller works that out with overread_ok() below.
template <bool Relu, class T>
void forward_row(const T* r0, const T* r1, T* o, int64_t Wo, bool overread) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) return avx512::forward_row<Relu>(r0, r1, o, Wo, overread);
#endif
  (void)overread;
  forward_row_plain<Relu>(r0, r1, o, Wo);
}

template <bool Relu, class T>
void backward_row(const T* r0, const T* r1, const T* go, T* d0, T* d1, int64_t Wo, bool overread) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) return avx512::backward_row<Relu>(r0, r1, go, d0, d1, Wo, overread);
#endif
  (void)overread;
  backward_row_plain<Relu>(r0, r1, go, d0, d1, Wo);
}

// For output row oh of an (H,W) plane pooled to (Ho,Wo): true when the vectors the
// last group of windows reads (see forward_row) end inside the plane and inside the
// output (or gradient) plane, so that no read can leave the tensor.
inline bool overread_ok(int64_t oh, int64_t H, int64_t W, int64_t Ho, int64_t Wo) {
  const int64_t last = (Wo - 1) / 16 * 16;  // first window of the last group
  return (2 * oh + 1) * W + 2 * last + 32 <= H * W && oh * Wo + last + 16 <= Ho * Wo;
}

}  // namespace weft::raw::pool2x2
