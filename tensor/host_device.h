// WEFT_HD marks a function that both the host compiler and nvcc compile: plain inline C++
// for the CPU loops, __host__ __device__ inside a .cu file. The headers that carry weft's
// shared arithmetic (random_math.h, elementwise_math.h, optim_math.h) use it, so that the
// CPU kernels of tensor/cpu/ and the CUDA kernels of cuda/kernels/ run the same formula
// instead of two copies that can drift apart.
//
// Internal header: not installed.
#pragma once

#include <cmath>

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
}  // namespace weft::hd
