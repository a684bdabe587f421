// Copies and fills on one GPU, the twins of tensor/cpu/copy.cpp.
//
// dst = src with src broadcast to dst's shape, any strides on either side, and a dtype
// conversion (static_cast, like the CPU loop: nonzero -> true for bool). The elementwise
// launcher's contiguous path makes a plain same-dtype copy a vectorised stream.
#include <cmath>

#include "../kernels.h"
#include "common.cuh"

namespace weft::cuda {

using namespace kern;

namespace {

template <class D, class S>
__global__ void copy_contig(int64_t n, D* __restrict__ d, const S* __restrict__ s) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) d[i] = static_cast<D>(s[i]);
}

template <class D, class S>
__global__ void copy_strided(int64_t n, D* d, const S* s, OffsetCalc<2> c) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const auto off = c.get(i);
    d[off[0]] = static_cast<D>(s[off[1]]);
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
  dispatch_all(dst.dtype(), [&]<class D>() {
    dispatch_all(src.dtype(), [&]<class S>() {
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
  dispatch_all(dst.dtype(), [&]<class T>() {
    const T v = static_cast<T>(value);
    if (c.contiguous() && value == 0 && !std::signbit(value)) {  // zeros: a memset (also what graphs capture best)
      WEFT_CUDA_CHECK("fill_", cudaMemsetAsync(dst.raw_data(), 0, n * sizeof(T), detail::stream()));
      return;
    }
    fill_kernel<T><<<detail::blocks_for(n), detail::kThreads, 0, detail::stream()>>>(n, ptr<T>(dst), v, c);
  });
  WEFT_CUDA_LAUNCH_CHECK("fill_");
}

}  // namespace weft::cuda
