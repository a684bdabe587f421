// Tensor: a cheap, shared handle to a view of a Storage.
//
// A tensor is (storage, shape, strides, offset, dtype). Element [i0, i1, ...] lives at
// storage.data + (offset + i0*strides[0] + i1*strides[1] + ...) * element_size. Views --
// reshape, transpose, narrow, expand -- make a new TensorImpl over the same storage, so
// they cost no copy; a write through one view is seen by all.
//
// Copying a Tensor copies the handle (like std::shared_ptr), never the data: use clone().
//
// Where the methods live: the data structure and the raw kernels (tensor/raw.h) know
// nothing of autograd. The methods below that compute something (`a + b`, `x.matmul(w)`,
// `t.sum(1, true)`) are the *differentiable* ops: they are defined next to their backward
// closures in autograd/ops/, and record themselves on the tape when grad mode is on.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "device.h"
#include "dtype.h"
#include "shape.h"
#include "storage.h"

namespace weft {

namespace autograd { struct AutogradMeta; }

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Strides strides;  // in elements, not bytes; 0 for a broadcast (expanded) dimension
  int64_t offset = 0;
  DType dtype = DType::Float32;
  // Whether autograd tracks this tensor: the one autograd flag tensor/ itself reads
  // (printing, creation with requires_grad), so it lives here and not in AutogradMeta.
  bool requires_grad = false;
  // The rest of the autograd state (.grad, the tape entry that made it, hooks). Empty
  // for the vast majority of tensors, which are plain data; see autograd/tape.h.
  std::shared_ptr<autograd::AutogradMeta> autograd;
};

class Tensor;
// Called with the leaf tensor when its gradient is final during backward (see autograd/tape.h).
using GradReadyHook = std::function<void(const Tensor& leaf)>;

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor: defined() is false
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

  // ---- metadata -------------------------------------------------------------------
  // Metadata of an undefined tensor is an error, not a crash.
  const Shape& shape() const { return checked().shape; }
  const Strides& strides() const { return checked().strides; }
  int64_t dim() const { return checked().shape.size(); }
  int64_t size(int64_t d) const;    // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t offset() const { return checked().offset; }
  int64_t numel() const { return checked().shape.numel(); }
  DType dtype() const { return checked().dtype; }
  Device device() const { return checked().storage->device(); }
  const std::shared_ptr<Storage>& storage() const { return checked().storage; }
  bool is_contiguous() const;
  uint64_t version() const { return checked().storage->version(); }

  // ---- data access (host tensors) --------------------------------------------------
  // Pointer to element [0,0,...] (already offset). Checks the dtype matches T.
  template <class T> T* data() const;
  void* raw_data() const;  // untyped, already offset
  // The single value of a one-element tensor.
  template <class T = float> T item() const;
  // Elements in row-major order (works for any strides).
  template <class T = float> std::vector<T> to_vector() const;

  // ---- autograd (autograd/tensor_autograd.cpp) --------------------------------------
  bool requires_grad() const;
  Tensor& requires_grad_(bool on = true);  // only on leaves
  bool is_leaf() const;                    // made by the user, not by a recorded op
  Tensor grad() const;                     // undefined until a backward reaches it
  void set_grad(const Tensor& g);
  Tensor detach() const;                   // same data, cut from the tape
  void retain_grad();                      // keep .grad on a non-leaf too
  // Fires `hook(leaf)` the moment this leaf's gradient is final inside backward; returns
  // an id for remove_grad_ready_hook.
  int register_grad_ready_hook(GradReadyHook hook);
  void remove_grad_ready_hook(int id);
  void backward() const;                   // this must be a one-element tensor
  void backward(const Tensor& grad) const;

  // ---- views: share storage (autograd/ops/view_ops.cpp) -------------------------
  Tensor reshape(const Shape& shape) const;  // a view when strides allow, else a copy; one -1 allowed
  Tensor view(const Shape& shape) const;     // always a view, or an error
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const;  // transpose of a 2-D tensor
  Tensor permute(const Shape& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor operator[](int64_t index) const { return select(0, index); }
  Tensor expand(const Shape& shape) const;  // -1 keeps a size
  Tensor expand_as(const Tensor& other) const { return expand(other.shape()); }
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor contiguous() const;  // this tensor itself when already contiguous
  Tensor clone() const;
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;

  // ---- in place: never recorded; they bump the version counter -------------------
  Tensor& copy_(const Tensor& src);  // broadcasts src to this shape
  Tensor& fill_(double value);
  Tensor& zero_();
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& add_(double value);
  Tensor& sub_(const Tensor& other) { return add_(other, -1.0); }
  Tensor& mul_(const Tensor& other);
  Tensor& mul_(double value);
  Tensor& div_(double value) { return mul_(1.0 / value); }

  // ---- differentiable math (autograd/ops/*.cpp) -----------------------------------
  Tensor add(const Tensor& o) const;
  Tensor sub(const Tensor& o) const;
  Tensor mul(const Tensor& o) const;
  Tensor div(const Tensor& o) const;
  Tensor neg() const;
  Tensor exp() const;
  Tensor log() const;
  Tensor sqrt() const;
  Tensor pow(double exponent) const;
  Tensor pow(const Tensor& exponent) const;
  Tensor abs() const;
  Tensor relu() const;
  Tensor sigmoid() const;
  Tensor tanh() const;
  Tensor gelu(std::string_view approximate = "none") const;  // "none" (erf) or "tanh"
  Tensor silu() const;
  Tensor leaky_relu(double negative_slope = 0.01) const;
  Tensor softplus(double beta = 1.0, double threshold = 20.0) const;

  Tensor sum() const;
  Tensor sum(int64_t dim, bool keepdim = false) const;
  Tensor sum(const Shape& dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(int64_t dim, bool keepdim = false) const;
  Tensor mean(const Shape& dims, bool keepdim = false) const;
  // As PyTorch's: max() shares the gradient among tied maxima (among the NaNs if any);
  // max(dim) is the value at argmax(dim), the first of tied maxima or the first NaN, and
  // sends all the gradient there (PyTorch's max(dim).values; the index is argmax(dim),
  // there is no (values, indices) pair). For the shared gradient along dims use
  // weft::amax.
  Tensor max() const;
  Tensor max(int64_t dim, bool keepdim = false) const;
  Tensor min() const;
  Tensor min(int64_t dim, bool keepdim = false) const;
  Tensor argmax(int64_t dim, bool keepdim = false) const;  // int64
  Tensor argmin(int64_t dim, bool keepdim = false) const;

  Tensor matmul(const Tensor& o) const;
  Tensor softmax(int64_t dim) const;
  Tensor log_softmax(int64_t dim) const;
  Tensor gather(int64_t dim, const Tensor& index) const;
  Tensor index_select(int64_t dim, const Tensor& index) const;

  // Comparisons give bool tensors (not differentiable).
  Tensor eq(const Tensor& o) const;
  Tensor ne(const Tensor& o) const;
  Tensor lt(const Tensor& o) const;
  Tensor le(const Tensor& o) const;
  Tensor gt(const Tensor& o) const;
  Tensor ge(const Tensor& o) const;

 private:
  const TensorImpl& checked() const {
    if (!impl_) throw_undefined();
    return *impl_;
  }
  [[noreturn]] static void throw_undefined();

  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);
// Printing with options: at most `edge` items of each dimension shown at each end.
std::string to_string(const Tensor& t, int precision = 4, int64_t edge = 3);

// A new TensorImpl over existing storage (used by views and kernels).
Tensor make_tensor(std::shared_ptr<Storage> storage, const Shape& shape, const Strides& strides,
                   int64_t offset, DType dtype);
// A fresh contiguous tensor with uninitialised contents.
Tensor empty(const Shape& shape, DType dtype = kFloat32, Device device = kCPU);

// True when a and b have equal shapes and every element differs by at most
// atol + rtol * |b| (NaNs are never close).
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);
// Exact equality of shape, dtype and every element.
bool equal(const Tensor& a, const Tensor& b);

// ---- template definitions -----------------------------------------------------------
template <class T>
T* Tensor::data() const {
  WEFT_CHECK(defined(), "data: the tensor is undefined");
  WEFT_CHECK(dtype() == dtype_of<T>(), "data: the tensor holds ", dtype_name(dtype()),
             ", asked for ", dtype_name(dtype_of<T>()));
  return static_cast<T*>(impl_->storage->data()) + impl_->offset;
}

}  // namespace weft

// tensor.h is also the folder's umbrella header: creating tensors and setting threads
// come with it. (These include tensor.h back; the class above is already complete.)
#include "creation.h"
#include "thread_pool.h"
