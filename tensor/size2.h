// Size2: a (height, width) pair for kernel sizes, strides, padding and dilation, that
// takes one number for both or exactly two:
//
//   Conv2dOptions{.kernel_size = 3, .padding = 1}          3x3, padding (1, 1)
//   Conv2dOptions{.kernel_size = {3, 5}, .padding = {1, 2}}
//
// A plain std::array<int64_t, 2> there would take `.padding = 1` as (1, 0), without a
// warning under g++ (brace elision): a 28x28 input came out 28x26. Size2 has no such
// reading: one number means both, two mean (h, w), three do not compile.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace weft {

struct Size2 {
  int64_t h, w;
  constexpr Size2(int64_t both) : h(both), w(both) {}  // NOLINT: implicit on purpose, see above
  constexpr Size2(int64_t height, int64_t width) : h(height), w(width) {}
  constexpr int64_t operator[](size_t i) const { return i == 0 ? h : w; }
  constexpr int64_t& operator[](size_t i) { return i == 0 ? h : w; }
  friend constexpr bool operator==(const Size2&, const Size2&) = default;
  std::string str() const { return "(" + std::to_string(h) + "," + std::to_string(w) + ")"; }
};

}  // namespace weft
