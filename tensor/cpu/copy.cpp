// Copies between layouts, dtypes and devices, and fill.
//
// Within one device a copy is one strided loop (a kernel on a GPU) that also converts
// dtypes and broadcasts. Between host and GPU only whole contiguous buffers of one dtype
// cross (DeviceBackend::copy_bytes); anything else is first made into such a buffer on the side
// that has the strided or differently typed data.
#include <algorithm>
#include <cstring>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

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

// dst (k, n), contiguous  =  the transpose of src (n, k) with row stride lds.
// The loop that for_each would run walks src down its columns, a cache miss per element
// (and with a power-of-two row stride every line lands in the same cache set): 2 ms
// for 1024 x 1024 floats on a Zen 4 core. Tiles of 32 source rows x 16 columns keep
// both sides' lines in cache, and 4 x 4 blocks move through SSE registers: 0.2-0.8 ms.
template <class T>
void transpose_2d(const T* src, int64_t n, int64_t k, int64_t lds, T* dst) {
  constexpr int64_t kTileRows = 32, kTileCols = 16;
  for (int64_t i0 = 0; i0 < n; i0 += kTileRows)
    for (int64_t j0 = 0; j0 < k; j0 += kTileCols) {
      const int64_t i1 = std::min(n, i0 + kTileRows), j1 = std::min(k, j0 + kTileCols);
      int64_t i = i0;
#if defined(__SSE__)
      if constexpr (std::is_same_v<T, float>) {
        for (; i + 4 <= i1; i += 4) {
          int64_t j = j0;
          for (; j + 4 <= j1; j += 4) {
            const float* s = src + i * lds + j;
            __m128 r0 = _mm_loadu_ps(s), r1 = _mm_loadu_ps(s + lds), r2 = _mm_loadu_ps(s + 2 * lds),
                   r3 = _mm_loadu_ps(s + 3 * lds);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            float* d = dst + j * n + i;
            _mm_storeu_ps(d, r0), _mm_storeu_ps(d + n, r1), _mm_storeu_ps(d + 2 * n, r2), _mm_storeu_ps(d + 3 * n, r3);
          }
          for (; j < j1; ++j)
            for (int64_t r = i; r < i + 4; ++r) dst[j * n + r] = src[r * lds + j];
        }
      }
#endif
      for (; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) dst[j * n + i] = src[i * lds + j];
    }
}

// Copies a transposed matrix into a contiguous one with transpose_2d; false when
// dst = src is not that case.
bool copy_transposed(const Tensor& dst, const Tensor& src) {
  if (dst.dim() != 2 || src.shape() != dst.shape() || src.dtype() != dst.dtype() || !dst.is_contiguous()) return false;
  const int64_t k = dst.shape()[0], n = dst.shape()[1];  // src is the transpose of an (n, k) row-major matrix
  if (src.strides()[0] != 1 || src.strides()[1] < k || k < 2 || n < 2) return false;
  if (element_size(dst.dtype()) == 2) {  // a 16-bit float: moved as its bits
    transpose_2d<uint16_t>(static_cast<const uint16_t*>(src.raw_data()), n, k, src.strides()[1],
                           static_cast<uint16_t*>(dst.raw_data()));
    return true;
  }
  bool done = false;
  dispatch_all(dst.dtype(), [&]<class T>() {
    if constexpr (sizeof(T) == 4 || sizeof(T) == 8) {
      transpose_2d<T>(src.data<T>(), n, k, src.strides()[1], dst.data<T>());
      done = true;
    }
  });
  return done;
}

// float32 <-> 16 bits between contiguous tensors of one shape: the conversion every op on
// a 16-bit tensor runs on its inputs and output (half_backend.h), as a plain loop over
// raw pointers that the compiler vectorises, split over the threads. False when dst = src
// is not that case.
bool convert_contiguous(const Tensor& dst, const Tensor& src) {
  const DType d = dst.dtype(), s = src.dtype();
  if (!(is_half(d) && s == kFloat32) && !(d == kFloat32 && is_half(s))) return false;
  if (!(dst.shape() == src.shape()) || !dst.is_contiguous() || !src.is_contiguous()) return false;
  const int64_t n = dst.numel();
  auto run = [&](auto convert, auto* out, const auto* in) {
    parallel_for(0, n, 32768, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) out[i] = convert(in[i]);
    });
  };
  // Lambdas, not function pointers, so that the conversion inlines into the loop.
  auto* h_out = static_cast<uint16_t*>(dst.raw_data());
  const auto* h_in = static_cast<const uint16_t*>(src.raw_data());
  if (d == kBFloat16) run([](float f) { return half::float_to_bf16(f); }, h_out, src.data<float>());
  else if (d == kFloat16) run([](float f) { return half::float_to_fp16(f); }, h_out, src.data<float>());
  else if (s == kBFloat16) run([](uint16_t h) { return half::bf16_to_float(h); }, dst.data<float>(), h_in);
  else run([](uint16_t h) { return half::fp16_to_float(h); }, dst.data<float>(), h_in);
  return true;
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
  if (convert_contiguous(dst, src) || copy_transposed(dst, src)) {
    dst.storage()->bump_version();
    return;
  }
  dispatch_storage(dst.dtype(), [&]<class D>() {
    dispatch_storage(src.dtype(), [&]<class S>() {
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
  dispatch_storage(dst.dtype(), [&]<class T>() {
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
