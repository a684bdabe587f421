// HalfPrecisionHook: gradient buckets sent as 16-bit floats, bf16 or fp16 (comm_hook.h).
//
// Each float32 is rounded to 16 bits (round to nearest, ties to even):
//   bf16: float32's 8-bit exponent, 7 stored mantissa bits: float32's range, relative
//         rounding error at most 2^-8;
//   fp16: 5-bit exponent, 10 mantissa bits: error at most 2^-11, but values above 65504
//         become inf and those below 2^-24 become 0 (no loss scaling here).
//
// HOW THE SUM IS TAKEN. weft has no 16-bit dtype and the communicators reduce only
// float32, float64 and int64, and adding 16-bit patterns as integers is meaningless. So
// the 16-bit values travel packed four to an int64 (a bit pattern the communicators only
// move, never add), by ALLGATHER; every rank then decodes all ranks' values and adds them
// in float32, in rank order:
//     sum = ((h(g_0) + h(g_1)) + h(g_2)) + ...        (h = round to 16 bits and back)
// The same expression on every rank: all ranks get identical gradients, and the result
// is reproducible (like DDP's deterministic mode). Only the rounding of each rank's
// values to 16 bits is lost; the sum itself is float32.
//
// BYTES. This rank sends its packed bucket, 2 bytes per value (plus at most 6 bytes of
// padding to fill the last int64), to each of the p-1 others in a ring allgather:
// (p-1) * 2n bytes against the float32 all-reduce's 2 (p-1)/p * 4n. Half at p = 2, equal
// at p = 4, more beyond: a 16-bit all-reduce (NCCL's, or PyTorch's fp16 hook) would halve
// the traffic at any p, but needs a communicator that adds 16-bit values.
#pragma once

#include <cstdint>

#include "comm_hook.h"

namespace weft::parallel {

enum class HalfFormat { BFloat16, Float16 };

// One float32 to 16 bits and back, rounding to nearest even (NaN stays NaN).
uint16_t float_to_half(float f, HalfFormat format);
float half_to_float(uint16_t h, HalfFormat format);

class HalfPrecisionHook : public CommHook {
 public:
  explicit HalfPrecisionHook(HalfFormat format) : format_(format) {}
  std::string name() const override { return format_ == HalfFormat::BFloat16 ? "bf16" : "fp16"; }
  WorkHandle reduce(size_t index, GradientBucket& bucket, Communicator& comm) override;

 private:
  HalfFormat format_;
};

}  // namespace weft::parallel
