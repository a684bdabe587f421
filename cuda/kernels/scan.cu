// cumsum and topk on the GPU, the twins of tensor/cpu/scan.cpp.
//
// The input is contiguous and viewed as (outer, n, inner); one thread walks one
// (outer, inner) line, n elements `inner` apart, in the CPU's order, so results match
// the CPU bit for bit (floats add in double). A straightforward first version: a
// parallel scan or a radix select pays off only for long lines, and no benchmark has
// asked for one yet.
#include "../kernels.h"
#include "common.cuh"

namespace weft::cuda {

using namespace kern;

namespace {

template <class T>
__global__ void cumsum_kernel(int64_t lines, T* out, const T* a, int64_t n, int64_t inner, bool reverse) {
  using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;
  for (int64_t line = global_thread(); line < lines; line += grid_threads()) {
    const int64_t base = (line / inner) * n * inner + line % inner;
    Acc acc = 0;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t at = base + (reverse ? n - 1 - j : j) * inner;
      acc += static_cast<Acc>(a[at]);
      out[at] = static_cast<T>(acc);
    }
  }
}

// raw::topk's order: largest (or smallest) first, NaN above everything, ties to the
// lower index.
template <class T>
__device__ __forceinline__ bool better(T a, int64_t ia, T b, int64_t ib, bool largest) {
  const bool an = a != a, bn = b != b;
  if (an != bn) return largest ? an : bn;
  if (!an && a != b) return largest ? a > b : a < b;
  return ia < ib;
}

// Insertion into the line's output, kept sorted best first: O(n k) per line. Elements
// arrive in index order, so an equal one goes after those already there.
template <class T>
__global__ void topk_kernel(int64_t lines, T* values, int64_t* indices, const T* a, int64_t n, int64_t inner,
                            int64_t k, bool largest) {
  for (int64_t line = global_thread(); line < lines; line += grid_threads()) {
    const int64_t o = line / inner, i = line % inner;
    const T* row = a + o * n * inner + i;
    T* v = values + o * k * inner + i;
    int64_t* ix = indices + o * k * inner + i;
    int64_t filled = 0;
    for (int64_t j = 0; j < n; ++j) {
      const T x = row[j * inner];
      if (filled == k && !better(x, j, v[(k - 1) * inner], ix[(k - 1) * inner], largest)) continue;
      int64_t at = filled < k ? filled++ : k - 1;
      while (at > 0 && better(x, j, v[(at - 1) * inner], ix[(at - 1) * inner], largest)) {
        v[at * inner] = v[(at - 1) * inner];
        ix[at * inner] = ix[(at - 1) * inner];
        --at;
      }
      v[at * inner] = x;
      ix[at * inner] = j;
    }
  }
}

}  // namespace

void cumsum(const Tensor& out, const Tensor& a, int64_t outer, int64_t n, int64_t inner, bool reverse) {
  const int64_t lines = outer * inner;
  if (lines == 0 || n == 0) return;
  dispatch_numeric(a.dtype(), "cumsum", [&]<class T>() {
    cumsum_kernel<T><<<detail::blocks_for(lines), detail::kThreads, 0, detail::stream()>>>(
        lines, ptr<T>(out), ptr<const T>(a), n, inner, reverse);
  });
  WEFT_CUDA_LAUNCH_CHECK("cumsum");
}

void topk(const Tensor& values, const Tensor& indices, const Tensor& a, int64_t outer, int64_t n, int64_t inner,
          int64_t k, bool largest) {
  const int64_t lines = outer * inner;
  if (lines == 0 || k == 0) return;
  dispatch_numeric(a.dtype(), "topk", [&]<class T>() {
    topk_kernel<T><<<detail::blocks_for(lines), detail::kThreads, 0, detail::stream()>>>(
        lines, ptr<T>(values), ptr<int64_t>(indices), ptr<const T>(a), n, inner, k, largest);
  });
  WEFT_CUDA_LAUNCH_CHECK("topk");
}

}  // namespace weft::cuda
