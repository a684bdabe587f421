// Creating tensors: filled, ranged, from values, random.
//
//   auto x = weft::zeros({2, 3});                 // float32 on cpu:0
//   auto i = weft::arange(0, 10, 1, weft::kInt64);
//   auto w = weft::randn({784, 512}, {.requires_grad = true});
//   auto v = weft::tensor({1.f, 2.f, 3.f, 4.f}, {2, 2});
#pragma once

#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <vector>

#include "generator.h"
#include "tensor.h"

namespace weft {

struct TensorOptions {
  DType dtype = kFloat32;
  Device device = kCPU;
  bool requires_grad = false;
};

Tensor empty(const Shape& shape, const TensorOptions& opt);
Tensor zeros(const Shape& shape, const TensorOptions& opt = {});
Tensor ones(const Shape& shape, const TensorOptions& opt = {});
Tensor full(const Shape& shape, double value, const TensorOptions& opt = {});
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
Tensor empty_like(const Tensor& t);
// start, start+step, ... < end
Tensor arange(double start, double end, double step = 1, DType dtype = kFloat32);
Tensor arange(int64_t end, DType dtype = kInt64);
Tensor linspace(double start, double end, int64_t steps, DType dtype = kFloat32);
// From values in row-major order; `shape` defaults to 1-D of values.size().
Tensor tensor(const std::vector<float>& values, const Shape& shape = {}, const TensorOptions& opt = {});
Tensor tensor(const std::vector<double>& values, const Shape& shape, const TensorOptions& opt);
Tensor tensor(const std::vector<int64_t>& values, const Shape& shape = {});
// tensor({1.f, 2.f}) is float32, tensor({1, 2}) int64; an explicit TensorOptions wins.
template <class T>
Tensor tensor(std::initializer_list<T> values, const Shape& shape = {}) {
  if constexpr (std::is_integral_v<T>) return tensor(std::vector<int64_t>(values.begin(), values.end()), shape);
  else return tensor(std::vector<double>(values.begin(), values.end()), shape, TensorOptions{});
}
template <class T>
Tensor tensor(std::initializer_list<T> values, const Shape& shape, const TensorOptions& opt) {
  return tensor(std::vector<double>(values.begin(), values.end()), shape, opt);
}
Tensor scalar_tensor(double value, const TensorOptions& opt = {});

Tensor rand(const Shape& shape, const TensorOptions& opt = {}, Generator& gen = default_generator());
Tensor randn(const Shape& shape, const TensorOptions& opt = {}, Generator& gen = default_generator());
// 0/1 values with P(1) = p, in the given dtype.
Tensor bernoulli(const Shape& shape, double p, const TensorOptions& opt = {}, Generator& gen = default_generator());
Tensor uniform(const Shape& shape, double lo, double hi, const TensorOptions& opt = {},
               Generator& gen = default_generator());
Tensor normal(const Shape& shape, double mean, double std, const TensorOptions& opt = {},
              Generator& gen = default_generator());

}  // namespace weft
