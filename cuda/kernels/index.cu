// gather / scatter_add and index_select / index_add on the GPU, the twins of
// tensor/cpu/index.cpp.
//
// One thread per element of the index (gather, scatter_add) or of the side that has the
// picked dim's full extent (index_select: the output; index_add: the source). OffsetCalc
// walks every operand with its own strides; the picked dim's stride is zeroed in the
// calculator and added back as index * stride, so no operand needs to be contiguous.
//
// The adjoints add with atomics: several index entries may name the same target. (Float
// atomics make the order of those adds, and so the last bits of the result, vary from
// run to run; exact int64 sums do not.) Indices are not range-checked on the GPU (that
// needs a host sync): negative ones wrap like the CPU, out-of-range ones read 0 and
// write nothing, so no kernel touches memory outside its tensors.
#include "../kernels.h"
#include "common.cuh"

namespace weft::cuda {

using namespace kern;

namespace {

// Strides of t with dim d zeroed.
Strides without_dim(const Tensor& t, int64_t d) {
  Strides s = t.strides();
  s[d] = 0;
  return s;
}

// Wraps a negative index; -1 when out of [-size, size).
__device__ __forceinline__ int64_t wrap(int64_t v, int64_t size) {
  if (v < -size || v >= size) return -1;
  return v < 0 ? v + size : v;
}

template <class T>
__device__ __forceinline__ void atomic_add(T* p, T v) {
  if constexpr (std::is_same_v<T, int64_t>)
    atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));  // two's complement
  else
    atomicAdd(p, v);
}

// out[i] = a[... index[i] at dim d ...]; c walks (a without d, index, out) over index's shape.
template <class T>
__global__ void gather_kernel(int64_t n, T* out, const T* a, const int64_t* index, int64_t size_d, int64_t stride_d,
                              OffsetCalc<3> c) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const auto off = c.get(i);
    const int64_t v = wrap(index[off[1]], size_d);
    out[off[2]] = v < 0 ? T(0) : a[off[0] + v * stride_d];
  }
}

// out[... index[i] at dim d ...] += src[i]; c walks (out without d, index, src).
template <class T>
__global__ void scatter_add_kernel(int64_t n, T* out, const int64_t* index, const T* src, int64_t size_d,
                                   int64_t stride_d, OffsetCalc<3> c) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const auto off = c.get(i);
    const int64_t v = wrap(index[off[1]], size_d);
    if (v >= 0) atomic_add(out + off[0] + v * stride_d, src[off[2]]);
  }
}

// out[..., k, ...] = a[..., index[k], ...]; c walks (a without d, out) over out's shape;
// k = (i / inner) % K is element i's coordinate along d.
template <class T>
__global__ void index_select_kernel(int64_t n, T* out, const T* a, const int64_t* index, int64_t index_stride,
                                    int64_t K, int64_t inner, int64_t size_d, int64_t stride_d, OffsetCalc<2> c) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const auto off = c.get(i);
    const int64_t k = (i / inner) % K;
    const int64_t v = wrap(index[k * index_stride], size_d);
    out[off[1]] = v < 0 ? T(0) : a[off[0] + v * stride_d];
  }
}

// out[..., index[k], ...] += src[..., k, ...]; c walks (out without d, src) over src's shape.
template <class T>
__global__ void index_add_kernel(int64_t n, T* out, const T* src, const int64_t* index, int64_t index_stride,
                                 int64_t K, int64_t inner, int64_t size_d, int64_t stride_d, OffsetCalc<2> c) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const auto off = c.get(i);
    const int64_t k = (i / inner) % K;
    const int64_t v = wrap(index[k * index_stride], size_d);
    if (v >= 0) atomic_add(out + off[0] + v * stride_d, src[off[1]]);
  }
}

int64_t inner_size(const Shape& s, int64_t d) {
  int64_t inner = 1;
  for (int64_t k = d + 1; k < s.size(); ++k) inner *= s[k];
  return inner;
}

}  // namespace

void gather(const Tensor& out, const Tensor& a, int64_t dim, const Tensor& index) {
  const int64_t n = index.numel();
  if (n == 0) return;
  const Shape& sh = index.shape();
  const OffsetCalc<3> c = make_calc<3>(sh, {without_dim(a, dim), index.strides(), out.strides()});
  dispatch_all(a.dtype(), [&]<class T>() {
    gather_kernel<T><<<detail::blocks_for(n), detail::kThreads, 0, detail::stream()>>>(
        n, ptr<T>(out), ptr<const T>(a), ptr<const int64_t>(index), a.shape()[dim], a.strides()[dim], c);
  });
  WEFT_CUDA_LAUNCH_CHECK("gather");
}

void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  const int64_t n = index.numel();
  if (n == 0) return;
  const OffsetCalc<3> c = make_calc<3>(index.shape(), {without_dim(out, dim), index.strides(), src.strides()});
  dispatch_numeric(src.dtype(), "scatter_add", [&]<class T>() {
    scatter_add_kernel<T><<<detail::blocks_for(n), detail::kThreads, 0, detail::stream()>>>(
        n, ptr<T>(out), ptr<const int64_t>(index), ptr<const T>(src), out.shape()[dim], out.strides()[dim], c);
  });
  WEFT_CUDA_LAUNCH_CHECK("scatter_add");
}

void index_select(const Tensor& out, const Tensor& a, int64_t dim, const Tensor& index) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const int64_t K = out.shape()[dim], inner = inner_size(out.shape(), dim);
  const int64_t index_stride = index.dim() > 0 ? index.strides()[0] : 0;
  const OffsetCalc<2> c = make_calc<2>(out.shape(), {without_dim(a, dim), out.strides()});
  dispatch_all(a.dtype(), [&]<class T>() {
    index_select_kernel<T><<<detail::blocks_for(n), detail::kThreads, 0, detail::stream()>>>(
        n, ptr<T>(out), ptr<const T>(a), ptr<const int64_t>(index), index_stride, K, inner, a.shape()[dim],
        a.strides()[dim], c);
  });
  WEFT_CUDA_LAUNCH_CHECK("index_select");
}

void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  const int64_t n = src.numel();
  if (n == 0) return;
  const int64_t K = src.shape()[dim], inner = inner_size(src.shape(), dim);
  const int64_t index_stride = index.dim() > 0 ? index.strides()[0] : 0;
  const OffsetCalc<2> c = make_calc<2>(src.shape(), {without_dim(out, dim), src.strides()});
  dispatch_numeric(src.dtype(), "add", [&]<class T>() {
    index_add_kernel<T><<<detail::blocks_for(n), detail::kThreads, 0, detail::stream()>>>(
        n, ptr<T>(out), ptr<const T>(src), ptr<const int64_t>(index), index_stride, K, inner, out.shape()[dim],
        out.strides()[dim], c);
  });
  WEFT_CUDA_LAUNCH_CHECK("index_add");
}

}  // namespace weft::cuda
