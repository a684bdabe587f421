// bfloat16 and IEEE float16: the 16-bit patterns, their conversions to and from float32,
// and the C++ types weft::bfloat16 / weft::float16 that tensors of those dtypes hold.
//
//   bf16: float32's sign and 8-bit exponent, 7 stored mantissa bits (float32's range,
//         relative rounding error at most 2^-8);
//   fp16: 5-bit exponent (bias 15), 10 mantissa bits (error at most 2^-11), largest
//         finite 65504, subnormals down to 2^-24.
//
// To 16 bits: round to nearest, ties to even; NaN stays NaN; fp16 overflows to inf from
// 65520 up. To float32: exact (every 16-bit value is a float32).
//
// How ops compute on 16-bit tensors: each value is widened to float32, the float32
// kernel runs, and the result is rounded once to the 16-bit type (half_backend.h). That
// is what PyTorch's CPU kernels do element by element, so results match it; sums, means
// and matrix products accumulate in float32. The conversions are inline because every
// op on a 16-bit tensor runs them over whole tensors.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace weft::half {

// bf16 is float32's top 16 bits. Rounding: add 0x7FFF plus the lowest kept bit, so that
// an exact tie (low half 0x8000) rounds up only when the kept part is odd.
inline uint16_t float_to_bf16(float f) {
  const auto x = std::bit_cast<uint32_t>(f);
  if (f != f) return static_cast<uint16_t>((x >> 16) | 0x0040);  // NaN: keep it a NaN
  return static_cast<uint16_t>((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

inline float bf16_to_float(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

inline uint16_t float_to_fp16(float f) {
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

// Branch-free, so that a loop over a tensor vectorises. Shifted left by 17, the
// exponent and mantissa bits land where float32's are, 4 bits too high:
//   normal (and inf/NaN): shift them into place, add 224 to the exponent so that 31
//     (inf/NaN) becomes 255, and multiply by 2^-112 -- together the rebias 15 -> 127,
//     exact, with inf and NaN unchanged by the multiplication;
//   zero and subnormal (exponent 0): the mantissa m is the value m * 2^-24; put it in the
//     mantissa of 0.5 (exponent 126) and subtract 0.5, which leaves m * 2^-24 exactly.
inline float fp16_to_float(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & 0x80000000u, two_w = w + w;  // two_w: sign shifted out
  const float normal = std::bit_cast<float>((two_w >> 4) + (224u << 23)) * 0x1.0p-112f;
  const float subnormal = std::bit_cast<float>((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t bits = two_w < (1u << 27) ? std::bit_cast<uint32_t>(subnormal) : std::bit_cast<uint32_t>(normal);
  return std::bit_cast<float>(sign | bits);
}

}  // namespace weft::half

namespace weft {

// The element types of kBFloat16 and kFloat16 tensors: 16 bits, built from any
// arithmetic value by rounding through float32 (explicitly: a narrowing is never
// silent) and read back as float32 (implicitly: widening is exact). No arithmetic of
// their own: `a + b` adds the float32 values. One template, two formats.
template <uint16_t (*Narrow)(float), float (*Widen)(uint16_t)>
struct Float16Bits {
  uint16_t bits = 0;
  Float16Bits() = default;
  template <class T>
  explicit Float16Bits(T v) : bits(Narrow(static_cast<float>(v))) {}
  operator float() const { return Widen(bits); }
};

using bfloat16 = Float16Bits<half::float_to_bf16, half::bf16_to_float>;
using float16 = Float16Bits<half::float_to_fp16, half::fp16_to_float>;

static_assert(sizeof(bfloat16) == 2 && sizeof(float16) == 2);

}  // namespace weft
