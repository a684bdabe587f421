// DType: the element type of a tensor, and helpers that turn a runtime dtype into a
// compile-time C++ type for the kernels.
//
// float32 is the working type; float64 exists so gradcheck's finite differences are
// accurate; int64 holds labels and indices; bool holds comparison results and masks.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

#include "error.h"

namespace weft {

enum class DType : uint8_t { Float32, Float64, Int64, Bool };

inline constexpr DType kFloat32 = DType::Float32;
inline constexpr DType kFloat64 = DType::Float64;
inline constexpr DType kInt64 = DType::Int64;
inline constexpr DType kBool = DType::Bool;

int64_t element_size(DType dt);
const char* dtype_name(DType dt);  // "float32"
std::ostream& operator<<(std::ostream& os, DType dt);
inline bool is_floating(DType dt) { return dt == DType::Float32 || dt == DType::Float64; }

template <class T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::Float32; }
template <> constexpr DType dtype_of<double>() { return DType::Float64; }
template <> constexpr DType dtype_of<int64_t>() { return DType::Int64; }
template <> constexpr DType dtype_of<bool>() { return DType::Bool; }

// dispatch_floating(dt, "op", [&]<class T>() { ... }) calls the lambda with T = float or
// double, and throws naming the op for any other dtype.
template <class F>
decltype(auto) dispatch_floating(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::Float32: return f.template operator()<float>();
    case DType::Float64: return f.template operator()<double>();
    default: throw Error(detail::str(op, ": expected a floating-point tensor, got ", dtype_name(dt)));
  }
}

// Float types plus int64 (arithmetic that makes sense on integers).
template <class F>
decltype(auto) dispatch_numeric(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::Float32: return f.template operator()<float>();
    case DType::Float64: return f.template operator()<double>();
    case DType::Int64: return f.template operator()<int64_t>();
    default: throw Error(detail::str(op, ": not supported for ", dtype_name(dt), " tensors"));
  }
}

// Every dtype (copies, comparisons, where).
template <class F>
decltype(auto) dispatch_all(DType dt, F&& f) {
  switch (dt) {
    case DType::Float32: return f.template operator()<float>();
    case DType::Float64: return f.template operator()<double>();
    case DType::Int64: return f.template operator()<int64_t>();
    case DType::Bool: return f.template operator()<bool>();
  }
  throw Error("dispatch: unknown dtype");
}

}  // namespace weft
