#include "dtype.h"

#include <ostream>
#include <utility>

namespace weft {

int64_t element_size(DType dt) {
  switch (dt) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Int64: return 8;
    case DType::Bool: return 1;
    case DType::BFloat16: return 2;
    case DType::Float16: return 2;
  }
  return 0;
}

const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int64: return "int64";
    case DType::Bool: return "bool";
    case DType::BFloat16: return "bfloat16";
    case DType::Float16: return "float16";
  }
  return "unknown";
}

std::ostream& operator<<(std::ostream& os, DType dt) { return os << dtype_name(dt); }

DType promote_floating(DType a, DType b) {
  WEFT_CHECK(is_floating(a) && is_floating(b), "promote_floating: ", a, " and ", b, " are not both floating");
  if (a == b) return a;
  if (a == kFloat64 || b == kFloat64) return kFloat64;
  return kFloat32;  // float32 with a 16-bit type, or bfloat16 with float16
}

DType parse_dtype(const std::string& name) {
  static const std::pair<const char*, DType> names[] = {
      {"fp32", kFloat32}, {"float32", kFloat32}, {"float", kFloat32},  {"fp64", kFloat64},  {"float64", kFloat64},
      {"double", kFloat64}, {"bf16", kBFloat16}, {"bfloat16", kBFloat16}, {"fp16", kFloat16}, {"float16", kFloat16},
      {"half", kFloat16},   {"int64", kInt64},   {"bool", kBool}};
  for (const auto& [n, dt] : names)
    if (name == n) return dt;
  throw Error(detail::str("unknown dtype '", name, "' (expected fp32, fp64, bf16, fp16, int64 or bool, or the "
                          "long names float32, float64, bfloat16, float16)"));
}

namespace detail {
void unsupported_dtype(const char* op, DType dt, bool floating_only) {
  if (is_half(dt))
    throw Error(str(op, ": no ", dtype_name(dt), " kernel (convert with .to(kFloat32) first)"));
  if (floating_only) throw Error(str(op, ": expected a floating-point tensor, got ", dtype_name(dt)));
  throw Error(str(op, ": not supported for ", dtype_name(dt), " tensors"));
}
}  // namespace detail

}  // namespace weft
