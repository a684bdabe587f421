#include "half.h"

#include <bit>
#include <cmath>

namespace weft::half {

// bf16 is float32's top 16 bits. Rounding: add 0x7FFF plus the lowest kept bit, so that
// an exact tie (low half 0x8000) rounds up only when the kept part is odd.
uint16_t float_to_bf16(float f) {
  const auto x = std::bit_cast<uint32_t>(f);
  if (std::isnan(f)) return static_cast<uint16_t>((x >> 16) | 0x0040);  // keep it a NaN
  return static_cast<uint16_t>((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

float bf16_to_float(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

uint16_t float_to_fp16(float f) {
  const auto x = std::bit_cast<uint32_t>(f);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t a = x & 0x7FFFFFFF;
  if (a > 0x7F800000) return sign | 0x7E00;   // NaN
  if (a >= 0x477FF000) return sign | 0x7C00;  // >= 65520 (or inf): rounds to inf
  if (a < 0x38800000) {
    // Below 2^-14, fp16's subnormals: multiples of 2^-24. Scaling by 2^24 is exact and
    // nearbyint rounds to even (the default rounding mode); 1024 lands on 2^-14, correctly.
    const float units = std::nearbyint(std::bit_cast<float>(a) * 16777216.0f);
    return sign | static_cast<uint16_t>(units);
  }
  // Normal: rebias the exponent (127 -> 15), then round 23 mantissa bits to 10; a carry
  // out of the mantissa moves into the exponent, which is the right answer.
  const uint32_t r = a - (112u << 23);
  return sign | static_cast<uint16_t>((r + 0xFFF + ((r >> 13) & 1)) >> 13);
}

float fp16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float32
    const float v = static_cast<float>(mant) / 16777216.0f;
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7F800000 | (mant << 13));  // inf, NaN (payload kept)
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

}  // namespace weft::half
