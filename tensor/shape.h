// Shape: the sizes (or strides) of a tensor, at most kMaxDims of them, stored inline.
//
// Shapes are built and compared on every op, so they live on the stack: no heap
// allocation, no pointer chasing. The same type holds strides (`Strides`).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <span>
#include <string>
#include <vector>

namespace weft {

inline constexpr int kMaxDims = 8;

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(std::span<const int64_t> dims);
  Shape(const std::vector<int64_t>& dims) : Shape(std::span<const int64_t>(dims)) {}

  int64_t size() const { return ndim_; }
  bool empty() const { return ndim_ == 0; }
  int64_t operator[](int64_t i) const { return d_[i]; }
  int64_t& operator[](int64_t i) { return d_[i]; }
  const int64_t* begin() const { return d_.data(); }
  const int64_t* end() const { return d_.data() + ndim_; }
  int64_t* begin() { return d_.data(); }
  int64_t* end() { return d_.data() + ndim_; }
  int64_t back() const { return d_[ndim_ - 1]; }

  void push_back(int64_t v);
  void insert(int64_t pos, int64_t v);
  void erase(int64_t pos);
  void resize(int64_t n, int64_t fill = 0);

  // Product of the sizes; 1 for a 0-d shape.
  int64_t numel() const;
  std::vector<int64_t> vec() const { return {begin(), end()}; }
  std::string str() const;  // "(3,4)"

  friend bool operator==(const Shape& a, const Shape& b);

 private:
  std::array<int64_t, kMaxDims> d_{};
  int64_t ndim_ = 0;
};

using Strides = Shape;

std::ostream& operator<<(std::ostream& os, const Shape& s);

// Row-major strides of a contiguous tensor of this shape.
Strides contiguous_strides(const Shape& shape);

// The broadcast of two shapes (numpy rules), or an Error naming `op` and both shapes.
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);

// Turns a possibly negative dim into [0, ndim), or throws naming `op`.
int64_t wrap_dim(const char* op, int64_t dim, int64_t ndim);

}  // namespace weft
