// Copies between layouts, dtypes and devices, and fill.
//
// Within one device a copy is one strided loop (a kernel on a GPU) that also converts
// dtypes and broadcasts. Between host and GPU only whole contiguous buffers of one dtype
// cross (DeviceBackend::copy_bytes); anything else is first made into such a buffer on the side
// that has the strided or differently typed data.
#include <cstring>

#include "../backend.h"
#include "../raw.h"
#include "loops.h"

namespace weft::raw {

namespace {

void copy_bytes(const Tensor& dst, const Tensor& src) {
  // The backend of whichever side is not the host moves the bytes.
  const Device accelerator = dst.device().is_cpu() ? src.device() : dst.device();
  backend(accelerator).copy_bytes(dst.raw_data(), dst.device(), src.raw_data(), src.device(),
                                  static_cast<size_t>(src.numel() * element_size(src.dtype())));
}

// dst = src where at least one is on a GPU and they are on different devices.
void copy_across(const Tensor& dst, const Tensor& src) {
  if (dst.dtype() == src.dtype() && dst.shape() == src.shape() && dst.is_contiguous() && src.is_contiguous()) {
    copy_bytes(dst, src);
    return;
  }
  // Make src's data, converted and broadcast to dst's shape and dtype, contiguous on
  // src's side; carry it over; scatter it into dst's layout on dst's side.
  Tensor staged = empty(dst.shape(), dst.dtype(), src.device());
  copy_(staged, src);
  Tensor landing = dst.is_contiguous() ? dst : empty(dst.shape(), dst.dtype(), dst.device());
  copy_bytes(landing, staged);
  if (!landing.is_same(dst)) copy_(dst, landing);
}

}  // namespace

void copy_(const Tensor& dst, const Tensor& src) {
  WEFT_CHECK(dst.defined() && src.defined(), "copy_: a tensor is undefined");
  check_writable("copy_", dst);
  WEFT_CHECK(broadcast_shapes("copy_", dst.shape(), src.shape()) == dst.shape(), "copy_: source ", src.shape(),
             " does not broadcast to the destination ", dst.shape());
  if (!dst.device().is_cpu() || !src.device().is_cpu()) {
    if (dst.device() == src.device())
      backend(dst.device()).copy(dst, src);
    else
      copy_across(dst, src);
    dst.storage()->bump_version();
    return;
  }
  dispatch_all(dst.dtype(), [&]<class D>() {
    dispatch_all(src.dtype(), [&]<class S>() {
      cpu::for_each<2>(dst.shape(), {&dst, &src}, [](const std::array<char*, 2>& p, int64_t n, const std::array<int64_t, 2>& s) {
        if constexpr (std::is_same_v<D, S>) {
          if (s[0] == sizeof(D) && s[1] == sizeof(S)) {
            std::memcpy(p[0], p[1], n * sizeof(D));
            return;
          }
        }
        for (int64_t i = 0; i < n; ++i)
          *reinterpret_cast<D*>(p[0] + i * s[0]) = static_cast<D>(*reinterpret_cast<const S*>(p[1] + i * s[1]));
      });
    });
  });
  dst.storage()->bump_version();
}

void fill_(const Tensor& dst, double value) {
  cpu::check_defined("fill_", dst);
  check_writable("fill_", dst);
  if (!dst.device().is_cpu()) {
    backend(dst.device()).fill(dst, value);
    dst.storage()->bump_version();
    return;
  }
  dispatch_all(dst.dtype(), [&]<class T>() {
    const T v = static_cast<T>(value);
    cpu::for_each<1>(dst.shape(), {&dst}, [v](const std::array<char*, 1>& p, int64_t n, const std::array<int64_t, 1>& s) {
      for (int64_t i = 0; i < n; ++i) *reinterpret_cast<T*>(p[0] + i * s[0]) = v;
    });
  });
  dst.storage()->bump_version();
}

Tensor clone(const Tensor& a) {
  WEFT_CHECK(a.defined(), "clone: the tensor is undefined");
  Tensor out = empty(a.shape(), a.dtype(), a.device());
  copy_(out, a);
  return out;
}

Tensor contiguous(const Tensor& a) {
  WEFT_CHECK(a.defined(), "contiguous: the tensor is undefined");
  return a.is_contiguous() ? a : clone(a);
}

Tensor to_dtype(const Tensor& a, DType dt) {
  WEFT_CHECK(a.defined(), "to: the tensor is undefined");
  if (a.dtype() == dt) return a;
  Tensor out = empty(a.shape(), dt, a.device());
  copy_(out, a);
  return out;
}

Tensor to_device(const Tensor& a, Device d) {
  WEFT_CHECK(a.defined(), "to: the tensor is undefined");
  if (a.device() == d) return a;
  Tensor src = (!a.device().is_cpu() || !d.is_cpu()) ? contiguous(a) : a;
  Tensor out = empty(a.shape(), a.dtype(), d);
  copy_(out, src);
  return out;
}

}  // namespace weft::raw
