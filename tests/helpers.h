// Small helpers shared by the tests.
#pragma once

#include <catch2/catch.hpp>

#include "weft.h"

namespace weft::test {

// A float64 leaf that requires grad, with values from a fixed seed.
inline Tensor leaf(const Shape& shape, uint64_t seed = 1) {
  Generator gen(seed);
  return randn(shape, {.dtype = kFloat64, .requires_grad = true}, gen);
}

// Values bounded away from zero (for log, sqrt, div, pow).
inline Tensor positive_leaf(const Shape& shape, uint64_t seed = 1) {
  Generator gen(seed);
  return uniform(shape, 0.5, 2.0, {.dtype = kFloat64, .requires_grad = true}, gen);
}

inline std::vector<double> vec(const Tensor& t) { return t.to_vector<double>(); }

}  // namespace weft::test

// Runs gradcheck and reports the first mismatch on failure.
#define REQUIRE_GRADCHECK(f, ...)                                           \
  do {                                                                      \
    auto weft_gc_result = ::weft::autograd::gradcheck(f, __VA_ARGS__);     \
    INFO(weft_gc_result.report);                                            \
    REQUIRE(weft_gc_result.ok);                                             \
  } while (0)
