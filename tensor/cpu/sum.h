// The sum of a contiguous run of values, the innermost loop of every sum in weft's CPU
// kernels (raw::reduce, and the convolutions' bias gradients in conv.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace weft::cpu {

// What a sum of T accumulates in: double for floating types, T itself for integers.
template <class T>
using acc_t = std::conditional_t<std::is_floating_point_v<T>, double, T>;

// sum of p[0, n). Floats: 16 float lanes within blocks of 1024 elements (so the compiler
// vectorises the adds), the block sums added in double (so long rows stay accurate).
template <class T>
acc_t<T> sum_contiguous(const T* __restrict p, int64_t n) {
  if constexpr (!std::is_floating_point_v<T>) {
    acc_t<T> s = 0;
    for (int64_t i = 0; i < n; ++i) s += p[i];
    return s;
  } else {
    constexpr int64_t kLanes = 16, kBlock = 1024;
    acc_t<T> total = 0;
    for (int64_t b = 0; b < n; b += kBlock) {
      const int64_t e = std::min(n, b + kBlock);
      T lane[kLanes] = {};
      int64_t i = b;
      for (; i + kLanes <= e; i += kLanes)
        for (int64_t l = 0; l < kLanes; ++l) lane[l] += p[i + l];
      acc_t<T> block = 0;
      for (int64_t l = 0; l < kLanes; ++l) block += lane[l];
      for (; i < e; ++i) block += p[i];
      total += block;
    }
    return total;
  }
}

}  // namespace weft::cpu
