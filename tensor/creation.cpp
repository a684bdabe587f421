#include "creation.h"

#include <cmath>
#include <cstring>

#include "error.h"
#include "raw.h"

namespace weft {

namespace {
// A fresh tensor is a leaf, so requires_grad is only the flag (and the dtype check of
// Tensor::requires_grad_): nothing of autograd/ is needed here.
Tensor finish(Tensor t, const TensorOptions& opt) {
  if (opt.requires_grad) {
    WEFT_CHECK(is_floating(t.dtype()), "requires_grad_: only floating-point tensors can require grad, this one is ",
               t.dtype());
    t.impl()->requires_grad = true;
  }
  return t;
}
}  // namespace

Tensor empty(const Shape& shape, const TensorOptions& opt) { return finish(empty(shape, opt.dtype, opt.device), opt); }

Tensor full(const Shape& shape, double value, const TensorOptions& opt) {
  Tensor t = empty(shape, opt.dtype, opt.device);
  raw::fill_(t, value);  // a kernel on a GPU: no host buffer, no transfer
  return finish(t, opt);
}

Tensor zeros(const Shape& shape, const TensorOptions& opt) { return full(shape, 0.0, opt); }
Tensor ones(const Shape& shape, const TensorOptions& opt) { return full(shape, 1.0, opt); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), {.dtype = t.dtype(), .device = t.device()}); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), {.dtype = t.dtype(), .device = t.device()}); }
Tensor full_like(const Tensor& t, double v) { return full(t.shape(), v, {.dtype = t.dtype(), .device = t.device()}); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.dtype(), t.device()); }
Tensor scalar_tensor(double value, const TensorOptions& opt) { return full({}, value, opt); }

Tensor arange(double start, double end, double step, DType dtype) {
  WEFT_CHECK(step != 0, "arange: step must be nonzero");
  WEFT_CHECK(std::isfinite(start) && std::isfinite(end), "arange: start and end must be finite");
  const double span = (end - start) / step;
  // 2^62 elements: far beyond any memory, and below where the double-to-int64 cast breaks.
  WEFT_CHECK(!(span > 0x1p62), "arange: [", start, ", ", end, ") in steps of ", step, " makes ", span,
             " elements, too many to allocate");
  const int64_t n = span > 0 ? static_cast<int64_t>(std::ceil(span)) : 0;
  Tensor out = empty({n}, dtype, kCPU);
  dispatch_numeric(dtype, "arange", [&]<class T>() {
    T* p = out.data<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(start + i * step);
  });
  return out;
}

Tensor arange(int64_t end, DType dtype) { return arange(0, static_cast<double>(end), 1, dtype); }

Tensor linspace(double start, double end, int64_t steps, DType dtype) {
  WEFT_CHECK(steps >= 1, "linspace: steps must be >= 1, got ", steps);
  Tensor out = empty({steps}, dtype, kCPU);
  dispatch_floating(dtype, "linspace", [&]<class T>() {
    T* p = out.data<T>();
    const double d = steps > 1 ? (end - start) / (steps - 1) : 0;
    for (int64_t i = 0; i < steps; ++i) p[i] = static_cast<T>(start + i * d);
  });
  return out;
}

namespace {
template <class T>
Tensor from_values(const std::vector<T>& values, const Shape& shape_in, DType dtype) {
  const Shape shape = shape_in.size() == 0 ? Shape{static_cast<int64_t>(values.size())} : shape_in;
  WEFT_CHECK(shape.numel() == static_cast<int64_t>(values.size()), "tensor: ", values.size(),
             " values do not fill shape ", shape, " (", shape.numel(), " elements)");
  Tensor src = empty(shape, dtype_of<T>(), kCPU);
  std::memcpy(src.raw_data(), values.data(), values.size() * sizeof(T));
  return raw::to_dtype(src, dtype);
}
}  // namespace

Tensor tensor(const std::vector<float>& values, const Shape& shape, const TensorOptions& opt) {
  return finish(raw::to_device(from_values(values, shape, opt.dtype), opt.device), opt);
}
Tensor tensor(const std::vector<double>& values, const Shape& shape, const TensorOptions& opt) {
  return finish(raw::to_device(from_values(values, shape, opt.dtype), opt.device), opt);
}
Tensor tensor(const std::vector<int64_t>& values, const Shape& shape) { return from_values(values, shape, kInt64); }

namespace {
// Random tensors: the numbers depend only on the seed and the generator offset.
template <class Fill>
Tensor random(const Shape& shape, const TensorOptions& opt, Fill fill) {
  // Filled where it lives: a GPU draws the same numbers as the CPU (tensor/random_math.h).
  Tensor t = empty(shape, opt.dtype, opt.device);
  fill(t);
  return finish(t, opt);
}
}  // namespace

Tensor uniform(const Shape& shape, double lo, double hi, const TensorOptions& opt, Generator& gen) {
  return random(shape, opt, [&](const Tensor& t) { raw::uniform_(t, lo, hi, gen); });
}
Tensor rand(const Shape& shape, const TensorOptions& opt, Generator& gen) { return uniform(shape, 0, 1, opt, gen); }
Tensor normal(const Shape& shape, double mean, double std, const TensorOptions& opt, Generator& gen) {
  return random(shape, opt, [&](const Tensor& t) { raw::normal_(t, mean, std, gen); });
}
Tensor randn(const Shape& shape, const TensorOptions& opt, Generator& gen) { return normal(shape, 0, 1, opt, gen); }
Tensor bernoulli(const Shape& shape, double p, const TensorOptions& opt, Generator& gen) {
  return random(shape, opt, [&](const Tensor& t) { raw::bernoulli_(t, p, gen); });
}

}  // namespace weft
