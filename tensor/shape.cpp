#include "shape.h"

#include <ostream>

#include "error.h"

namespace weft {

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(std::span<const int64_t>(dims.begin(), dims.size())) {}

Shape::Shape(std::span<const int64_t> dims) {
  WEFT_CHECK(dims.size() <= kMaxDims, "shape: ", dims.size(), " dimensions, weft supports at most ", kMaxDims);
  for (int64_t d : dims) d_[ndim_++] = d;
}

void Shape::push_back(int64_t v) {
  WEFT_CHECK(ndim_ < kMaxDims, "shape: more than ", kMaxDims, " dimensions; weft supports at most ", kMaxDims);
  d_[ndim_++] = v;
}

void Shape::insert(int64_t pos, int64_t v) {
  WEFT_CHECK(ndim_ < kMaxDims, "shape: more than ", kMaxDims, " dimensions; weft supports at most ", kMaxDims);
  for (int64_t i = ndim_; i > pos; --i) d_[i] = d_[i - 1];
  d_[pos] = v;
  ++ndim_;
}

void Shape::erase(int64_t pos) {
  for (int64_t i = pos; i + 1 < ndim_; ++i) d_[i] = d_[i + 1];
  --ndim_;
}

void Shape::resize(int64_t n, int64_t fill) {
  WEFT_CHECK(n <= kMaxDims, "shape: more than ", kMaxDims, " dimensions; weft supports at most ", kMaxDims);
  for (int64_t i = ndim_; i < n; ++i) d_[i] = fill;
  ndim_ = n;
}

// Every product of sizes is checked: an overflow would give a wrong element count, a
// too-small allocation and writes past its end (issue 17). A 0 anywhere makes the
// product 0 however large the other sizes are.
int64_t Shape::numel() const {
  for (int64_t d : *this)
    if (d == 0) return 0;
  int64_t n = 1;
  for (int64_t d : *this)
    if (__builtin_mul_overflow(n, d, &n))
      throw Error(detail::str("shape ", str(), " has more elements than an int64 can count"));
  return n;
}

std::string Shape::str() const {
  std::string s = "(";
  for (int64_t i = 0; i < ndim_; ++i) {
    if (i) s += ",";
    s += std::to_string(d_[i]);
  }
  return s + ")";
}

bool operator==(const Shape& a, const Shape& b) {
  if (a.ndim_ != b.ndim_) return false;
  for (int64_t i = 0; i < a.ndim_; ++i)
    if (a.d_[i] != b.d_[i]) return false;
  return true;
}

std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

Strides contiguous_strides(const Shape& shape) {
  Strides st;
  st.resize(shape.size());
  int64_t acc = 1;
  for (int64_t i = shape.size() - 1; i >= 0; --i) {
    st[i] = acc;
    if (__builtin_mul_overflow(acc, std::max<int64_t>(shape[i], 1), &acc))
      throw Error(detail::str("shape ", shape, ": its strides do not fit in an int64"));
  }
  return st;
}

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  const int64_t n = std::max(a.size(), b.size());
  Shape out;
  out.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    // Align from the right: dimension i of out is a's (i - (n - a.size())).
    const int64_t ia = i - (n - a.size()), ib = i - (n - b.size());
    const int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    WEFT_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", a, " and ", b,
               " cannot be broadcast (dimension ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int64_t wrap_dim(const char* op, int64_t dim, int64_t ndim) {
  const int64_t n = std::max<int64_t>(ndim, 1);  // a 0-d tensor accepts dim 0 and -1
  WEFT_CHECK(dim >= -n && dim < n, op, ": dim ", dim, " is out of range for a tensor with ", ndim,
             " dimensions");
  return dim < 0 ? dim + n : dim;
}

}  // namespace weft
