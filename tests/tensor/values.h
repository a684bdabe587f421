// Small helpers for the tensor op tests: tensors from literal values, and comparisons.
#pragma once

#include <catch2/catch.hpp>

#include <cstring>
#include <numeric>
#include <vector>

#include "weft.h"

namespace weft::test {

inline Tensor make(const std::vector<double>& v, const Shape& s, DType dt = kFloat32) {
  return tensor(v, s, {.dtype = dt});
}

inline std::vector<double> iota(int64_t n, double start = 1) {
  std::vector<double> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

inline void check_values(const Tensor& t, const std::vector<double>& expect, double tol = 1e-6) {
  const std::vector<double> got = t.to_vector<double>();
  REQUIRE(got.size() == expect.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    CHECK(got[i] == Approx(expect[i]).margin(tol));
  }
}

// A float64 leaf of distinct values (no ties for max pooling's finite differences).
inline Tensor distinct_leaf(const Shape& s) {
  Tensor perm = raw::to_dtype(randperm(s.numel()), kFloat64);
  Tensor x = make(perm.to_vector<double>(), s, kFloat64);
  raw::binary_scalar_(raw::Binary::Mul, x, 0.1);
  return x.requires_grad_(true);
}

// Equal bit for bit (so -0 differs from +0, and NaN equals a NaN of the same payload).
inline bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor ac = a.contiguous(), bc = b.contiguous();
  return std::memcmp(ac.raw_data(), bc.raw_data(), static_cast<size_t>(a.numel()) * element_size(a.dtype())) == 0;
}

}  // namespace weft::test
