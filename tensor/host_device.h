// WEFT_HD marks a function that both the host compiler and nvcc compile: plain inline C++
// for the CPU loops, __host__ __device__ inside a .cu file. The headers that carry weft's
// shared arithmetic (random_math.h, elementwise_math.h, optim_math.h) use it, so that the
// CPU kernels of tensor/cpu/ and the CUDA kernels of cuda/kernels/ run the same formula
// instead of two copies that can drift apart.
//
// Internal header: not installed.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define WEFT_HD __host__ __device__
#else
#define WEFT_HD
#endif

// Math functions with one name on both sides. The float overloads call the float
// functions (expf, not exp of a promoted double), from glibc on the host and from CUDA's
// libdevice on the GPU, so an unqualified call means the same precision everywhere.
namespace weft::hd {
WEFT_HD inline float exp(float x) { return ::expf(x); }
WEFT_HD inline double exp(double x) { return ::exp(x); }
WEFT_HD inline float log(float x) { return ::logf(x); }
WEFT_HD inline double log(double x) { return ::log(x); }
WEFT_HD inline float sqrt(float x) { return ::sqrtf(x); }
WEFT_HD inline double sqrt(double x) { return ::sqrt(x); }
WEFT_HD inline float tanh(float x) { return ::tanhf(x); }
WEFT_HD inline double tanh(double x) { return ::tanh(x); }
WEFT_HD inline float pow(float x, float y) { return ::powf(x, y); }
WEFT_HD inline double pow(double x, double y) { return ::pow(x, y); }
WEFT_HD inline float erf(float x) { return ::erff(x); }
WEFT_HD inline double erf(double x) { return ::erf(x); }
WEFT_HD inline float log1p(float x) { return ::log1pf(x); }
WEFT_HD inline double log1p(double x) { return ::log1p(x); }

// ---- fast float exp and erf for the hottest CPU loops ---------------------------------
// glibc's expf and erff are calls the compiler cannot vectorise, and a transformer's
// softmax and GELU spend most of their time in them. exp_fast and erf_fast are short
// branch-free formulas that inline and vectorise (16 floats at a time with AVX-512),
// with the accuracy of the vectorised ones PyTorch's CPU kernels use:
//   exp_fast: Cephes' expf (range reduction by ln 2, a degree-5 polynomial), within 1.01
//             ulp over the normal range (measured); subnormal results keep fewer bits,
//             x < -103.9 gives 0, x above ln(FLT_MAX) inf, and NaN stays NaN.
//   erf_fast: Abramowitz & Stegun 7.1.26 (absolute error 1.5e-7; 5e-7 measured in
//             float) -- the formula of PyTorch's Vectorized<float>::erf, hence of its
//             CPU float GELU.
// On the GPU, and for double, they are the libm functions. Used by: softmax and
// log_softmax (float), GELU and its gradient (float, approximate "none").
namespace detail {
inline float bits_to_float(int32_t i) {
  float f;
  __builtin_memcpy(&f, &i, sizeof f);
  return f;
}
inline float exp_fast_host(float x) {
  // Clamped so that n below fits an int; NaN fails both tests and becomes -103.9 here
  // (converting NaN to int is undefined behaviour) and is put back at the end.
  const float xc = x > -103.9f ? (x < 88.7228394f ? x : 88.7228394f) : -103.9f;
  // n = round(x / ln 2): adding and subtracting 1.5 * 2^23 rounds to an integer in the
  // float unit itself (floorf would not vectorise).
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;        // x - n ln 2, ln 2 in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float y = p * (r * r) + r + 1.0f;
  // y 2^n in two halves, so that n = 128 (just below overflow) and n < -126 (the
  // subnormals) scale correctly.
  const int32_t ni = int32_t(n), half = ni / 2;
  y *= bits_to_float((half + 127) << 23);
  y *= bits_to_float((ni - half + 127) << 23);
  y = x < -103.9f ? 0.0f : y;
  y = x > 88.7228394f ? __builtin_inff() : y;
  return x != x ? x : y;
}
inline float erf_fast_host(float x) {
  const float a = __builtin_fabsf(x);
  const float t = 1.0f / (1.0f + 0.3275911f * a);
  const float r = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
  return __builtin_copysignf(1.0f - r * exp_fast_host(-a * a), x);
}
}  // namespace detail

#if defined(__CUDA_ARCH__)
__device__ inline float exp_fast(float x) { return ::expf(x); }
__device__ inline float erf_fast(float x) { return ::erff(x); }
#else
inline float exp_fast(float x) { return detail::exp_fast_host(x); }
inline float erf_fast(float x) { return detail::erf_fast_host(x); }
#endif
WEFT_HD inline double exp_fast(double x) { return ::exp(x); }
WEFT_HD inline double erf_fast(double x) { return ::erf(x); }
}  // namespace weft::hd
