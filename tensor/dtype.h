// DType: the element type of a tensor, and helpers that turn a runtime dtype into a
// compile-time C++ type for the kernels.
//
// float32 is the working type; float64 exists so gradcheck's finite differences are
// accurate; int64 holds labels and indices; bool holds comparison results and masks;
// bfloat16 and float16 are the 16-bit floats of mixed-precision training (half.h: the
// C++ types, and how ops compute on them -- through float32).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

#include "error.h"
#include "half.h"

namespace weft {

enum class DType : uint8_t { Float32, Float64, Int64, Bool, BFloat16, Float16 };

inline constexpr DType kFloat32 = DType::Float32;
inline constexpr DType kFloat64 = DType::Float64;
inline constexpr DType kInt64 = DType::Int64;
inline constexpr DType kBool = DType::Bool;
inline constexpr DType kBFloat16 = DType::BFloat16;
inline constexpr DType kFloat16 = DType::Float16;

int64_t element_size(DType dt);
const char* dtype_name(DType dt);  // "float32"
std::ostream& operator<<(std::ostream& os, DType dt);
inline bool is_half(DType dt) { return dt == DType::BFloat16 || dt == DType::Float16; }
inline bool is_floating(DType dt) { return dt == DType::Float32 || dt == DType::Float64 || is_half(dt); }
// The dtype that holds both a and b exactly, for two floating dtypes: float64 over
// float32 over the 16-bit ones; bfloat16 with float16 gives float32 (neither holds the
// other), as in PyTorch.
DType promote_floating(DType a, DType b);
// "bf16" / "bfloat16", "fp16" / "float16" / "half", "fp32" / "float32", ...; throws naming
// the text and the accepted names.
DType parse_dtype(const std::string& name);

template <class T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::Float32; }
template <> constexpr DType dtype_of<double>() { return DType::Float64; }
template <> constexpr DType dtype_of<int64_t>() { return DType::Int64; }
template <> constexpr DType dtype_of<bool>() { return DType::Bool; }
template <> constexpr DType dtype_of<bfloat16>() { return DType::BFloat16; }
template <> constexpr DType dtype_of<float16>() { return DType::Float16; }

namespace detail {
// Throws: for a 16-bit float, that `op` has no kernel for it (and what to do); else that
// `op` wants a floating-point tensor (floating_only) or does not support dt.
[[noreturn]] void unsupported_dtype(const char* op, DType dt, bool floating_only = false);
}

// dispatch_floating(dt, "op", [&]<class T>() { ... }) calls the lambda with T = float or
// double, and throws naming the op for any other dtype. The kernels behind these
// dispatchers never see a 16-bit float: an op routes those through float32 first
// (tensor/half_backend.h); one that does not says so, naming the dtype.
template <class F>
decltype(auto) dispatch_floating(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::Float32: return f.template operator()<float>();
    case DType::Float64: return f.template operator()<double>();
    default: detail::unsupported_dtype(op, dt, /*floating_only=*/true);
  }
}

// Float types plus int64 (arithmetic that makes sense on integers).
template <class F>
decltype(auto) dispatch_numeric(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::Float32: return f.template operator()<float>();
    case DType::Float64: return f.template operator()<double>();
    case DType::Int64: return f.template operator()<int64_t>();
    default: detail::unsupported_dtype(op, dt);
  }
}

// Every dtype with a compute kernel (comparisons, where, gathers).
template <class F>
decltype(auto) dispatch_all(DType dt, F&& f) {
  switch (dt) {
    case DType::Float32: return f.template operator()<float>();
    case DType::Float64: return f.template operator()<double>();
    case DType::Int64: return f.template operator()<int64_t>();
    case DType::Bool: return f.template operator()<bool>();
    default: detail::unsupported_dtype("dispatch", dt);
  }
}

// Every dtype, the 16-bit floats as weft::bfloat16 / weft::float16: for what only moves
// or converts values on the CPU (copy_, fill_, item, gather, random draws).
template <class F>
decltype(auto) dispatch_storage(DType dt, F&& f) {
  switch (dt) {
    case DType::BFloat16: return f.template operator()<bfloat16>();
    case DType::Float16: return f.template operator()<float16>();
    default: return dispatch_all(dt, std::forward<F>(f));
  }
}

}  // namespace weft
