// Shared by the sharding and pipeline tests: image-shaped batches and logical devices.
#pragma once

#include <utility>
#include <vector>

#include "../../helpers.h"

namespace weft::test {

// A batch of n Fashion-MNIST-shaped images (random) and labels 0..9 from `seed`.
inline std::pair<Tensor, Tensor> images(int64_t n, uint64_t seed) {
  Generator gen(seed);
  Tensor x = randn({n, 1, 28, 28}, {}, gen);
  std::vector<int64_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[size_t(i)] = (i * 3 + int64_t(seed)) % 10;
  return {x, tensor(y)};
}

// cpu:0 .. cpu:n-1
inline std::vector<Device> cpus(int n) {
  std::vector<Device> d;
  for (int i = 0; i < n; ++i) d.push_back(Device::cpu(i));
  return d;
}

}  // namespace weft::test
