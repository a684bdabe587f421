// HalfPrecisionHook: gradient buckets sent as 16-bit floats, bf16 or fp16 (comm_hook.h).
//
// Each float32 is rounded to 16 bits (round to nearest, ties to even):
//   bf16: float32's 8-bit exponent, 7 stored mantissa bits: float32's range, relative
//         rounding error at most 2^-8;
//   fp16: 5-bit exponent, 10 mantissa bits: error at most 2^-11, but values from 65520 up
//         become inf and those of magnitude 2^-25 or less become 0 (no loss scaling here).
//
// HOW THE SUM IS TAKEN. A ring all-reduce (parallel/algorithms/ring_allreduce.h) whose
// messages are 16-bit: the communicators add only float32, float64 and int64 (no MPI or
// NCCL sum of weft's bfloat16/float16 dtypes here), so the values travel packed four to an int64 (a bit pattern the
// communicators only move, never add) and the hook does the adding itself, in float32:
//   reduce-scatter: each hop sends a chunk's partial sum rounded to 16 bits; the
//                   receiver adds it to its own float32 values
//   the owner of each finished chunk rounds it to 16 bits once more
//   all-gather:     those 16-bit chunks go round the ring, decoded into place
// as NCCL's bf16 all-reduce does. A partial sum is rounded at each of the p-1 hops (the
// error grows with p, about p * 2^-8 relative for bf16); every rank decodes the same
// bits, so all ranks get identical gradients, and the result is reproducible.
//
// BYTES. Half the float32 ring's at any p: each of the 2 (p-1) hops sends a chunk of
// ceil(n/4)/p words of 8 bytes, 2 (p-1)/p * 2n bytes against 2 (p-1)/p * 4n (plus at
// most 6 bytes of padding in the last word).
#pragma once

#include <cstdint>

#include "comm_hook.h"

namespace weft::parallel {

enum class HalfFormat { BFloat16, Float16 };

// One float32 to 16 bits and back, rounding to nearest even (NaN stays NaN): the
// conversions of tensor/half.h, chosen by format.
uint16_t float_to_half(float f, HalfFormat format);
float half_to_float(uint16_t h, HalfFormat format);

class HalfPrecisionHook : public CommHook {
 public:
  explicit HalfPrecisionHook(HalfFormat format) : format_(format) {}
  std::string name() const override { return format_ == HalfFormat::BFloat16 ? "bf16" : "fp16"; }
  WorkHandle reduce(size_t index, GradientBucket& bucket, Communicator& comm) override;

 private:
  static constexpr int kTag = 7350;  // its ring's messages
  HalfFormat format_;
};

}  // namespace weft::parallel
