// Printing tensors the way PyTorch does: nested brackets, aligned columns, long
// dimensions elided with "..." in the middle, then the shape and dtype.
#include <cmath>
#include <iomanip>
#include <sstream>

#include "raw.h"

namespace weft {

namespace {

struct Printer {
  std::vector<double> v;
  Shape shape;
  Strides strides;
  int precision;
  int64_t edge;
  bool integral;
  int width = 1;

  std::string fmt(double x) const {
    std::ostringstream os;
    if (integral) os << static_cast<int64_t>(x);
    else os << std::fixed << std::setprecision(precision) << x;
    return os.str();
  }

  void measure() {
    for (double x : v) width = std::max<int>(width, static_cast<int>(fmt(x).size()));
  }

  // Prints dimension `d` starting at flat offset `off`, indented by `indent` spaces.
  void print(std::ostream& os, int64_t d, int64_t off, int indent) const {
    if (d == shape.size()) {
      os << std::setw(width) << fmt(v[off]);
      return;
    }
    os << "[";
    const int64_t n = shape[d];
    const bool elide = n > 2 * edge;
    for (int64_t i = 0; i < n; ++i) {
      if (elide && i == edge) {
        os << (d + 1 == shape.size() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
        i = n - edge;
      }
      print(os, d + 1, off + i * strides[d], indent + 1);
      if (i + 1 < n) {
        if (d + 1 == shape.size()) os << ", ";
        else os << "," << std::string(shape.size() - d - 1, '\n') << std::string(indent + 1, ' ');
      }
    }
    os << "]";
  }
};

}  // namespace

std::string to_string(const Tensor& t, int precision, int64_t edge) {
  if (!t.defined()) return "Tensor(undefined)";
  std::ostringstream os;
  Tensor host = t.device().is_cpu() ? t : raw::to_device(t, kCPU);
  Printer p{host.to_vector<double>(), t.shape(), contiguous_strides(t.shape()), precision, edge,
            !is_floating(t.dtype())};
  p.measure();
  os << "tensor(";
  p.print(os, 0, 0, 7);
  os << ", shape=" << t.shape() << ", dtype=" << t.dtype();
  if (!(t.device() == kCPU)) os << ", device=" << t.device();
  if (t.requires_grad()) os << ", requires_grad";
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << to_string(t); }

}  // namespace weft
