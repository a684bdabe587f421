// Small helpers shared by the tests.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

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

// A fresh directory under the system temp dir, removed with everything in it at the end.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = std::filesystem::temp_directory_path() /
           ("weft-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
};

}  // namespace weft::test

// Runs gradcheck and reports the first mismatch on failure.
#define REQUIRE_GRADCHECK(f, ...)                                           \
  do {                                                                      \
    auto weft_gc_result = ::weft::autograd::gradcheck(f, __VA_ARGS__);     \
    INFO(weft_gc_result.report);                                            \
    REQUIRE(weft_gc_result.ok);                                             \
  } while (0)
