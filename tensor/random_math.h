// The arithmetic of weft's random numbers, shared by the CPU loops (tensor/cpu/random.cpp,
// Generator::philox) and the CUDA kernels (cuda/kernels/random.cu), so that one seed gives
// the same tensor on either device.
//
// Every function is a plain inline function that nvcc also compiles for the device
// (WEFT_HD). The transforms spell out their one multiply-add as fma(): left to
// themselves, compilers fuse `lo + (hi - lo) * u` on some targets and not on others, and
// the last bit of the result would then depend on the build. The transcendental functions
// (log, cos in normal()) come from each side's math library; they agree to within an ulp
// of double, so float32 results match bit for bit in all but a few-in-a-billion cases.
//
// Internal header: not installed.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace weft::random_math {

struct Words {
  uint32_t w[4];
};

// Philox 4x32 with 10 rounds (Salmon et al., "Parallel random numbers: as easy as 1, 2,
// 3", SC 2011): 128 random bits for counter c under key `seed`.
WEFT_HD inline Words philox(uint64_t seed, uint64_t c) {
  constexpr uint32_t kM0 = 0xD2511F53, kM1 = 0xCD9E8D57, kW0 = 0x9E3779B9, kW1 = 0xBB67AE85;
  uint32_t x0 = static_cast<uint32_t>(c), x1 = static_cast<uint32_t>(c >> 32), x2 = 0, x3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(kM0) * x0, p1 = static_cast<uint64_t>(kM1) * x2;
    const uint32_t y0 = static_cast<uint32_t>(p1 >> 32) ^ x1 ^ k0, y1 = static_cast<uint32_t>(p1);
    const uint32_t y2 = static_cast<uint32_t>(p0 >> 32) ^ x3 ^ k1, y3 = static_cast<uint32_t>(p0);
    x0 = y0, x1 = y1, x2 = y2, x3 = y3;
    k0 += kW0, k1 += kW1;
  }
  return {{x0, x1, x2, x3}};
}

// A double in [0, 1) from 53 of the 64 bits (hi, lo); exact, no rounding.
WEFT_HD inline double unit_double(uint32_t hi, uint32_t lo) {
  return static_cast<double>((static_cast<uint64_t>(hi) << 21) ^ (lo >> 11)) * (1.0 / 9007199254740992.0);
}

WEFT_HD inline double uniform(const Words& r, double lo, double hi) {
  return ::fma(hi - lo, unit_double(r.w[0], r.w[1]), lo);
}

// Box-Muller; 1 - u keeps the log argument in (0, 1].
WEFT_HD inline double normal(const Words& r, double mean, double std) {
  const double u1 = 1.0 - unit_double(r.w[0], r.w[1]), u2 = unit_double(r.w[2], r.w[3]);
  const double radius = ::sqrt(-2.0 * ::log(u1));
  const double c = ::cos(6.283185307179586476925286766559 * u2);
  return ::fma(std * radius, c, mean);
}

WEFT_HD inline double bernoulli(const Words& r, double p) { return unit_double(r.w[0], r.w[1]) < p ? 1.0 : 0.0; }

}  // namespace weft::random_math
