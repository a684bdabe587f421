// bfloat16 and IEEE float16 as 16-bit patterns, converted to and from float32.
//
//   bf16: float32's sign and 8-bit exponent, 7 stored mantissa bits (float32's range,
//         relative rounding error at most 2^-8);
//   fp16: 5-bit exponent (bias 15), 10 mantissa bits (error at most 2^-11), largest
//         finite 65504, subnormals down to 2^-24.
//
// To 16 bits: round to nearest, ties to even; NaN stays NaN; fp16 overflows to inf from
// 65520 up. To float32: exact (every 16-bit value is a float32).
//
// weft has no 16-bit tensor dtype yet; these serve the safetensors loader (BF16 and F16
// files) and the bf16/fp16 communication hook (parallel/half_hook.h).
#pragma once

#include <cstdint>

namespace weft::half {

uint16_t float_to_bf16(float f);
float bf16_to_float(uint16_t h);
uint16_t float_to_fp16(float f);
float fp16_to_float(uint16_t h);

}  // namespace weft::half
