#include "tensor.h"

#include <cmath>
#include <cstring>

#include "raw.h"

namespace weft {

void Tensor::throw_undefined() {
  throw Error("tensor: this tensor is undefined (default-constructed, or a gradient that was never computed)");
}

int64_t Tensor::size(int64_t d) const { return impl_->shape[wrap_dim("size", d, dim())]; }
int64_t Tensor::stride(int64_t d) const { return impl_->strides[wrap_dim("stride", d, dim())]; }

bool Tensor::is_contiguous() const {
  // Size-1 dimensions may have any stride: they are never stepped over. An empty tensor
  // has no elements to be out of place.
  if (numel() == 0) return true;
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  WEFT_CHECK(defined(), "data: the tensor is undefined");
  return static_cast<char*>(impl_->storage->data()) + impl_->offset * element_size(dtype());
}

template <class T>
T Tensor::item() const {
  WEFT_CHECK(defined(), "item: the tensor is undefined");
  WEFT_CHECK(numel() == 1, "item: the tensor has shape ", shape(), " (", numel(),
             " elements); item() needs exactly one");
  // A GPU value is copied back first (which waits for the GPU to get there).
  const Tensor c = device().is_cpu() ? *this : raw::to_device(*this, kCPU);
  return dispatch_storage(dtype(), [&]<class S>() { return static_cast<T>(*static_cast<S*>(c.raw_data())); });
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  WEFT_CHECK(defined(), "to_vector: the tensor is undefined");
  const Tensor host = device().is_cpu() ? *this : raw::to_device(*this, kCPU);
  Tensor c = raw::to_dtype(raw::contiguous(host), dtype_of<T>());
  const T* p = c.data<T>();
  return std::vector<T>(p, p + numel());
}

template float Tensor::item<float>() const;
template double Tensor::item<double>() const;
template int64_t Tensor::item<int64_t>() const;
template bool Tensor::item<bool>() const;
template int Tensor::item<int>() const;
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<bool> Tensor::to_vector<bool>() const;

Tensor make_tensor(std::shared_ptr<Storage> storage, const Shape& shape, const Strides& strides,
                   int64_t offset, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) WEFT_CHECK(d >= 0, "empty: negative size in shape ", shape);
  int64_t bytes = 0;
  WEFT_CHECK(!__builtin_mul_overflow(shape.numel(), int64_t(element_size(dtype)), &bytes), "empty: shape ", shape,
             " of ", dtype, " needs more bytes than an int64 can count");
  auto storage = Storage::allocate(static_cast<size_t>(bytes), device);
  return make_tensor(std::move(storage), shape, contiguous_strides(shape), 0, dtype);
}

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (!(a.shape() == b.shape())) return false;
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  for (size_t i = 0; i < va.size(); ++i)
    if (!(std::abs(va[i] - vb[i]) <= atol + rtol * std::abs(vb[i]))) return false;
  return true;
}

bool equal(const Tensor& a, const Tensor& b) {
  if (!(a.shape() == b.shape()) || a.dtype() != b.dtype()) return false;
  Tensor ca = raw::contiguous(a), cb = raw::contiguous(b);
  return std::memcmp(ca.raw_data(), cb.raw_data(), a.numel() * element_size(a.dtype())) == 0;
}

// A new handle on the same storage and layout, with no autograd state: plain data.
Tensor Tensor::detach() const { return make_tensor(storage(), shape(), strides(), offset(), dtype()); }

bool Tensor::requires_grad() const { return impl_->requires_grad; }

}  // namespace weft
