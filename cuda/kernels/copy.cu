// Copies and fills on one GPU, the twins of tensor/cpu/copy.cpp.
//
// dst = src with src broadcast to dst's shape, any strides on either side, and a dtype
// conversion (static_cast, like the CPU loop: nonzero -> true for bool; to and from the
// 16-bit floats through float32, rounding to nearest even, as tensor/half.h does). The
// elementwise launcher's contiguous path makes a plain same-dtype copy a vectorised stream.
//
// copy_ and fill_ are the only CUDA kernels that see bfloat16 and float16 tensors: every
// other op on them computes in float32 between two conversions (tensor/half_backend.h).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <type_traits>

#include "../kernels.h"
#include "common.cuh"

namespace weft::cuda {

using namespace kern;

namespace {

// The device type of a weft element type: CUDA's own 16-bit floats for weft's.
template <class T>
struct DeviceType {
  using type = T;
};
template <>
struct DeviceType<bfloat16> {
  using type = __nv_bfloat16;
};
template <>
struct DeviceType<float16> {
  using type = __half;
};

template <class T>
constexpr bool kIs16 = std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>;

// static_cast, except that a 16-bit float on either side goes through float32.
template <class D, class S>
__device__ D convert(S v) {
  if constexpr (!kIs16<D> && !kIs16<S>) {
    return static_cast<D>(v);
  } else {
    float f;
    if constexpr (std::is_same_v<S, __nv_bfloat16>) f = __bfloat162float(v);
    else if constexpr (std::is_same_v<S, __half>) f = __half2float(v);
    else f = static_cast<float>(v);
    if constexpr (std::is_same_v<D, __nv_bfloat16>) return __float2bfloat16_rn(f);
    else if constexpr (std::is_same_v<D, __half>) return __float2half_rn(f);
    else return static_cast<D>(f);
  }
}

template <class D, class S>
__global__ void copy_contig(int64_t n, D* __restrict__ d, const S* __restrict__ s) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) d[i] = convert<D>(s[i]);
}

template <class D, class S>
__global__ void copy_strided(int64_t n, D* d, const S* s, OffsetCalc<2> c) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const auto off = c.get(i);
    d[off[0]] = convert<D>(s[off[1]]);
  }
}

template <class T>
__global__ void fill_kernel(int64_t n, T* d, T v, OffsetCalc<1> c) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) d[c.get(i)[0]] = v;
}

}  // namespace

void copy(const Tensor& dst, const Tensor& src) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  const OffsetCalc<2> c = make_calc<2>(dst.shape(), {&dst, &src});
  cudaStream_t stream = detail::stream();
  dispatch_storage(dst.dtype(), [&]<class WD>() {
    dispatch_storage(src.dtype(), [&]<class WS>() {
      using D = typename DeviceType<WD>::type;
      using S = typename DeviceType<WS>::type;
      if constexpr (std::is_same_v<D, S>) {
        if (c.contiguous()) {  // a plain device-to-device copy: the copy engine's job
          WEFT_CUDA_CHECK("copy_", cudaMemcpyAsync(dst.raw_data(), src.raw_data(), n * sizeof(D),
                                                   cudaMemcpyDeviceToDevice, stream));
          return;
        }
      }
      if (c.contiguous())
        copy_contig<D, S><<<detail::blocks_for(n), detail::kThreads, 0, stream>>>(n, ptr<D>(dst), ptr<const S>(src));
      else
        copy_strided<D, S><<<detail::blocks_for(n), detail::kThreads, 0, stream>>>(n, ptr<D>(dst), ptr<const S>(src), c);
    });
  });
  WEFT_CUDA_LAUNCH_CHECK("copy_");
}

void fill(const Tensor& dst, double value) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  const OffsetCalc<1> c = make_calc<1>(dst.shape(), {&dst});
  dispatch_storage(dst.dtype(), [&]<class W>() {
    // A 16-bit value is filled as its bit pattern, rounded on the host (tensor/half.h).
    using T = std::conditional_t<sizeof(W) == 2, uint16_t, W>;
    T v;
    if constexpr (sizeof(W) == 2) v = W(value).bits;
    else v = static_cast<T>(value);
    if (c.contiguous() && value == 0 && !std::signbit(value)) {  // zeros: a memset (also what graphs capture best)
      WEFT_CUDA_CHECK("fill_", cudaMemsetAsync(dst.raw_data(), 0, n * sizeof(T), detail::stream()));
      return;
    }
    fill_kernel<T><<<detail::blocks_for(n), detail::kThreads, 0, detail::stream()>>>(n, ptr<T>(dst), v, c);
  });
  WEFT_CUDA_LAUNCH_CHECK("fill_");
}

}  // namespace weft::cuda
