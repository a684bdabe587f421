// softmax / log_softmax forward and backward, and the fused cross-entropy, on the GPU:
// the twins of tensor/cpu/softmax.cpp and tensor/cpu/loss.cpp.
//
// A (contiguous) tensor is seen as (outer, n, inner) around the softmax dim.
//   - inner == 1 (the usual last-dim softmax, cross-entropy rows): a group of G threads
//     per row -- 8 for rows of up to 16 (ten classes: four rows per warp), a warp up to
//     1024, else a 256-thread block. One pass finds the row max and
//     the sum of exp(x - max) together ("online softmax": when a larger max turns up the
//     running sum is rescaled), a second pass writes the result.
//   - inner > 1 (softmax over a middle dim): a thread per (outer, inner) column walks its
//     n elements with stride inner; neighbouring threads read neighbouring elements.
// Sums accumulate in float for float32 (the rows are short; tests hold them to 1e-5).
#include <type_traits>

#include "../kernels.h"
#include "common.cuh"

namespace weft::cuda {

using namespace kern;

namespace {

// Running (max, sum of exp(x - max)). -inf entries add nothing; a NaN poisons the sum.
template <class T>
struct MaxSum {
  T m, s;
  __device__ void add(T x) {
    if (x > m) {
      s = s * exp(m - x) + T(1);
      m = x;
    } else if (x != -INFINITY) {
      s += exp(x - m);
    }
  }
  __device__ static MaxSum combine(MaxSum a, MaxSum b) {
    if (a.m == -INFINITY) return {b.m, a.s + b.s};
    if (b.m == -INFINITY) return {a.m, a.s + b.s};
    const T m = a.m > b.m ? a.m : b.m;
    return {m, a.s * exp(a.m - m) + b.s * exp(b.m - m)};
  }
};

template <int G, class T>
__device__ MaxSum<T> group_max_sum(MaxSum<T> v, MaxSum<T>* scratch) {
  auto f = [](MaxSum<T> a, MaxSum<T> b) { return MaxSum<T>::combine(a, b); };
  if constexpr (G <= 32) {
#pragma unroll
    for (int o = G / 2; o > 0; o >>= 1) {
      MaxSum<T> other{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
      v = f(v, other);
    }
    return v;
  } else {
    // Through shared memory: each warp reduces, then every thread combines the warps' results.
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    v = group_max_sum<32, T>(v, scratch);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    MaxSum<T> r = scratch[0];
    for (int w = 1; w < G / 32; ++w) r = f(r, scratch[w]);
    return r;
  }
}

template <int G, class T>
__device__ T group_sum(T v, T* scratch) {
  if constexpr (G <= 32) return warp_sum<G>(v);
  else return block_all_reduce(v, [](T a, T b) { return a + b; }, scratch);
}

// ---- forward ----------------------------------------------------------------------------
// rows of length n; G threads per row, 256/G rows per block.
template <int G, class T>
__global__ void __launch_bounds__(256) softmax_rows(const T* __restrict__ x, T* __restrict__ y, int64_t rows,
                                                    int64_t n, bool log) {
  __shared__ MaxSum<T> scratch[32];
  constexpr int kGroups = 256 / G;
  const int group = threadIdx.x / G, lane = threadIdx.x % G;
  for (int64_t r0 = blockIdx.x * int64_t(kGroups); r0 < rows; r0 += int64_t(gridDim.x) * kGroups) {
    const int64_t r = r0 + group;
    const T* xr = x + r * n;
    MaxSum<T> ms{-INFINITY, T(0)};
    if (r < rows)
      for (int64_t j = lane; j < n; j += G) ms.add(xr[j]);
    ms = group_max_sum<G, T>(ms, scratch);
    if (r < rows) {
      T* yr = y + r * n;
      if (log) {
        const T log_sum = ::log(ms.s);
        for (int64_t j = lane; j < n; j += G) yr[j] = (xr[j] - ms.m) - log_sum;
      } else {
        const T inv = T(1) / ms.s;
        for (int64_t j = lane; j < n; j += G) yr[j] = exp(xr[j] - ms.m) * inv;
      }
    }
  }
}

// (outer, n, inner) with inner > 1: a thread per column.
template <class T>
__global__ void softmax_cols(const T* __restrict__ x, T* __restrict__ y, int64_t outer, int64_t n, int64_t inner,
                             bool log) {
  for (int64_t c = global_thread(); c < outer * inner; c += grid_threads()) {
    const int64_t o = c / inner, i = c - o * inner;
    const T* xc = x + o * n * inner + i;
    T* yc = y + o * n * inner + i;
    MaxSum<T> ms{-INFINITY, T(0)};
    for (int64_t j = 0; j < n; ++j) ms.add(xc[j * inner]);
    const T log_sum = ::log(ms.s), inv = T(1) / ms.s;
    for (int64_t j = 0; j < n; ++j)
      yc[j * inner] = log ? (xc[j * inner] - ms.m) - log_sum : exp(xc[j * inner] - ms.m) * inv;
  }
}

// ---- backward ---------------------------------------------------------------------------
// softmax: dx = y * (g - sum(g * y));  log_softmax: dx = g - exp(y) * sum(g)
template <int G, class T>
__global__ void __launch_bounds__(256) softmax_back_rows(const T* __restrict__ g, const T* __restrict__ y,
                                                         T* __restrict__ dx, int64_t rows, int64_t n, bool log) {
  __shared__ T scratch[32];
  constexpr int kGroups = 256 / G;
  const int group = threadIdx.x / G, lane = threadIdx.x % G;
  for (int64_t r0 = blockIdx.x * int64_t(kGroups); r0 < rows; r0 += int64_t(gridDim.x) * kGroups) {
    const int64_t r = r0 + group;
    const T *gr = g + r * n, *yr = y + r * n;
    T acc = 0;
    if (r < rows)
      for (int64_t j = lane; j < n; j += G) acc += log ? gr[j] : gr[j] * yr[j];
    acc = group_sum<G, T>(acc, scratch);
    if (r < rows) {
      T* dr = dx + r * n;
      for (int64_t j = lane; j < n; j += G) dr[j] = log ? gr[j] - exp(yr[j]) * acc : yr[j] * (gr[j] - acc);
    }
  }
}

template <class T>
__global__ void softmax_back_cols(const T* __restrict__ g, const T* __restrict__ y, T* __restrict__ dx,
                                  int64_t outer, int64_t n, int64_t inner, bool log) {
  for (int64_t c = global_thread(); c < outer * inner; c += grid_threads()) {
    const int64_t o = c / inner, i = c - o * inner, base = o * n * inner + i;
    T acc = 0;
    for (int64_t j = 0; j < n; ++j) acc += log ? g[base + j * inner] : g[base + j * inner] * y[base + j * inner];
    for (int64_t j = 0; j < n; ++j) {
      const int64_t k = base + j * inner;
      dx[k] = log ? g[k] - exp(y[k]) * acc : y[k] * (g[k] - acc);
    }
  }
}

struct Geometry {
  int64_t outer = 1, n = 1, inner = 1;
};
Geometry geometry(const Shape& s, int64_t dim) {
  Geometry g;
  if (s.size() == 0) return g;
  for (int64_t d = 0; d < dim; ++d) g.outer *= s[d];
  g.n = s[dim];
  for (int64_t d = dim + 1; d < s.size(); ++d) g.inner *= s[d];
  return g;
}

// Threads per row for rows of length n, and the grid for `rows` of them.
int group_for(int64_t n) { return n <= 16 ? 8 : n <= 1024 ? 32 : 256; }
unsigned row_blocks(int64_t rows, int group) {
  const int64_t per_block = 256 / group;
  return static_cast<unsigned>(std::min<int64_t>((rows + per_block - 1) / per_block, 65535));
}

// Calls launch(std::integral_constant<int, G>) for the group size G that suits rows of n.
template <class L>
void with_group(int64_t n, L&& launch) {
  switch (group_for(n)) {
    case 8: return launch(std::integral_constant<int, 8>{});
    case 32: return launch(std::integral_constant<int, 32>{});
    default: return launch(std::integral_constant<int, 256>{});
  }
}

// ---- cross-entropy ----------------------------------------------------------------------
// Row i: probs p = softmax(x_i); loss_i = -((1-e) log p_y + e * mean_j log p_j), written to
// row_loss[i] (double) for a fixed-order sum afterwards.
template <int G, class T>
__global__ void __launch_bounds__(256) ce_rows(const T* __restrict__ x, const int64_t* __restrict__ target,
                                               T* __restrict__ p, double* __restrict__ row_loss, int64_t rows,
                                               int64_t c, double eps) {
  __shared__ MaxSum<T> scratch[32];
  __shared__ double dscratch[32];
  constexpr int kGroups = 256 / G;
  const int group = threadIdx.x / G, lane = threadIdx.x % G;
  for (int64_t r0 = blockIdx.x * int64_t(kGroups); r0 < rows; r0 += int64_t(gridDim.x) * kGroups) {
    const int64_t r = r0 + group;
    const T* xr = x + r * c;
    MaxSum<T> ms{-INFINITY, T(0)};
    double sum_x = 0;
    if (r < rows)
      for (int64_t j = lane; j < c; j += G) {
        ms.add(xr[j]);
        sum_x += double(xr[j]);
      }
    ms = group_max_sum<G, T>(ms, scratch);
    sum_x = group_sum<G, double>(sum_x, dscratch);
    if (r < rows) {
      T* pr = p + r * c;
      const T inv = T(1) / ms.s;
      for (int64_t j = lane; j < c; j += G) pr[j] = exp(xr[j] - ms.m) * inv;
      if (lane == 0) {
        int64_t y = target[r];
        y = y < 0 ? 0 : (y >= c ? c - 1 : y);  // out-of-range targets are not checked here
        const double log_sum = ::log(double(ms.s));
        const double logp_y = double(xr[y] - ms.m) - log_sum;
        const double mean_logp = (sum_x - double(c) * double(ms.m)) / double(c) - log_sum;
        row_loss[r] = -((1 - eps) * logp_y + eps * mean_logp);
      }
    }
  }
}

// loss = sum(row_loss) / rows, one block, a fixed order.
template <class T>
__global__ void __launch_bounds__(1024) mean_kernel(const double* __restrict__ v, int64_t n, T* __restrict__ out) {
  __shared__ double scratch[32];
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += v[i];
  s = block_all_reduce(s, [](double a, double b) { return a + b; }, scratch);
  if (threadIdx.x == 0) *out = static_cast<T>(n ? s / double(n) : 0.0);
}

// glogits = grad / N * (p - q), q = (1-e) onehot(y) + e/C
template <class T, class G>
__global__ void ce_backward_kernel(const G* __restrict__ grad, const T* __restrict__ p,
                                   const int64_t* __restrict__ target, T* __restrict__ gx, int64_t rows, int64_t c,
                                   double eps) {
  const T scale = static_cast<T>(double(*grad) / double(rows > 1 ? rows : 1));
  const T off = static_cast<T>(eps / c), on = static_cast<T>(1 - eps + eps / c);
  for (int64_t k = global_thread(); k < rows * c; k += grid_threads()) {
    const int64_t i = k / c, j = k - i * c;
    gx[k] = scale * (p[k] - (j == target[i] ? on : off));
  }
}

}  // namespace

void softmax(const Tensor& out, const Tensor& a_in, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  const Tensor a = raw::contiguous(a_in);
  const Geometry g = geometry(a.shape(), dim);
  const int64_t rows = g.outer * g.inner;
  if (a.numel() == 0) return;
  cudaStream_t s = detail::stream();
  dispatch_floating(a.dtype(), name, [&]<class T>() {
    const T* x = ptr<const T>(a);
    T* y = ptr<T>(out);
    if (g.inner > 1)
      softmax_cols<T><<<detail::blocks_for(rows), detail::kThreads, 0, s>>>(x, y, g.outer, g.n, g.inner, log);
    else
      with_group(g.n, [&](auto G) {
        constexpr int kG = decltype(G)::value;
        softmax_rows<kG, T><<<row_blocks(rows, kG), 256, 0, s>>>(x, y, rows, g.n, log);
      });
  });
  WEFT_CUDA_LAUNCH_CHECK(name);
}

void softmax_backward(const Tensor& gin, const Tensor& grad_in, const Tensor& out_in, int64_t dim, bool log) {
  const char* name = log ? "log_softmax_backward" : "softmax_backward";
  const Tensor grad = raw::contiguous(grad_in), out = raw::contiguous(out_in);
  const Geometry g = geometry(out.shape(), dim);
  const int64_t rows = g.outer * g.inner;
  if (out.numel() == 0) return;
  cudaStream_t s = detail::stream();
  dispatch_floating(out.dtype(), name, [&]<class T>() {
    const T *gp = ptr<const T>(grad), *y = ptr<const T>(out);
    T* dx = ptr<T>(gin);
    if (g.inner > 1)
      softmax_back_cols<T><<<detail::blocks_for(rows), detail::kThreads, 0, s>>>(gp, y, dx, g.outer, g.n, g.inner, log);
    else
      with_group(g.n, [&](auto G) {
        constexpr int kG = decltype(G)::value;
        softmax_back_rows<kG, T><<<row_blocks(rows, kG), 256, 0, s>>>(gp, y, dx, rows, g.n, log);
      });
  });
  WEFT_CUDA_LAUNCH_CHECK(name);
}

void cross_entropy(const Tensor& loss, const Tensor& probs, const Tensor& logits_in, const Tensor& target_in,
                   double eps) {
  const Tensor logits = raw::contiguous(logits_in), target = raw::contiguous(target_in);
  const int64_t n = logits.shape()[0], c = logits.shape()[1];
  cudaStream_t s = detail::stream();
  dispatch_floating(logits.dtype(), "cross_entropy", [&]<class T>() {
    if (n == 0 || c == 0) {
      if (n == 0) fill(loss, 0.0);
      return;
    }
    Tensor row_loss = empty({n}, kFloat64, logits.device());
    const T* x = ptr<const T>(logits);
    const int64_t* y = ptr<const int64_t>(target);
    with_group(c, [&](auto G) {
      constexpr int kG = decltype(G)::value;
      ce_rows<kG, T><<<row_blocks(n, kG), 256, 0, s>>>(x, y, ptr<T>(probs), ptr<double>(row_loss), n, c, eps);
    });
    WEFT_CUDA_LAUNCH_CHECK("cross_entropy");
    mean_kernel<T><<<1, 1024, 0, s>>>(ptr<const double>(row_loss), n, ptr<T>(loss));
  });
  WEFT_CUDA_LAUNCH_CHECK("cross_entropy");
}

void cross_entropy_backward(const Tensor& glogits, const Tensor& grad, const Tensor& probs_in, const Tensor& target_in,
                            double eps) {
  const Tensor probs = raw::contiguous(probs_in), target = raw::contiguous(target_in);
  const int64_t n = probs.shape()[0], c = probs.shape()[1];
  if (n * c == 0) return;
  dispatch_floating(probs.dtype(), "cross_entropy_backward", [&]<class T>() {
    dispatch_floating(grad.dtype(), "cross_entropy_backward", [&]<class G>() {
      ce_backward_kernel<T, G><<<detail::blocks_for(n * c), detail::kThreads, 0, detail::stream()>>>(
          ptr<const G>(grad), ptr<const T>(probs), ptr<const int64_t>(target), ptr<T>(glogits), n, c, eps);
    });
  });
  WEFT_CUDA_LAUNCH_CHECK("cross_entropy_backward");
}

}  // namespace weft::cuda
