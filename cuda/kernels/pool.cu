// Max and average pooling on the GPU, the twins of tensor/cpu/pool.cpp.
//
// x (N,C,H,W) -> out (N,C,Ho,Wo). One thread per output element scans its window.
// Max pooling's backward finds each window's winner again in the saved input (first
// maximum in row-major window order, the last NaN: ew::pool_takes_over, the CPU's rule)
// and adds the gradient there; windows may overlap, so the adds are atomic onto a
// zeroed dx.
#include "../../tensor/elementwise_math.h"
#include "../detail.h"
#include "../ops.h"

namespace weft::cuda {

namespace {

struct PoolGeometry {
  int64_t planes;  // N*C
  int H, W, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw;
  bool count_include_pad;
};

PoolGeometry geometry(const Shape& xs, const Shape& ys, const Pool2dParams& p) {
  return {xs[0] * xs[1],    int(xs[2]),       int(xs[3]),       int(ys[2]),         int(ys[3]),
          int(p.kernel[0]), int(p.kernel[1]), int(p.stride[0]), int(p.stride[1]),   int(p.padding[0]),
          int(p.padding[1]), int(p.dilation[0]), int(p.dilation[1]), p.count_include_pad};
}

// The flat h*W+w index of the winner of output `o` (plane-relative), -1 if the window
// lies wholly in padding.
template <class T>
__device__ int window_argmax(const T* __restrict__ plane, const PoolGeometry& g, int oh, int ow) {
  int best = -1;
  T best_v = T(0);
  for (int i = 0; i < g.kh; ++i) {
    const int h = oh * g.sh - g.ph + i * g.dh;
    if (h < 0 || h >= g.H) continue;
    for (int j = 0; j < g.kw; ++j) {
      const int w = ow * g.sw - g.pw + j * g.dw;
      if (w < 0 || w >= g.W) continue;
      const T v = plane[h * g.W + w];
      if (best < 0 || ew::pool_takes_over(v, best_v)) {
        best = h * g.W + w;
        best_v = v;
      }
    }
  }
  return best;
}

template <class T>
__global__ void max_pool_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t* __restrict__ idx,
                                PoolGeometry g) {
  const int64_t n = g.planes * g.Ho * g.Wo;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < n; o += int64_t(gridDim.x) * blockDim.x) {
    const int ow = int(o % g.Wo), oh = int((o / g.Wo) % g.Ho);
    const int64_t plane = o / (int64_t(g.Ho) * g.Wo);
    const T* xp = x + plane * g.H * g.W;
    const int best = window_argmax(xp, g, oh, ow);
    if (out) out[o] = best < 0 ? T(-INFINITY) : xp[best];
    if (idx) idx[o] = best;
  }
}

template <class T>
__global__ void max_pool_backward_kernel(const T* __restrict__ grad, const T* __restrict__ x, T* __restrict__ gx,
                                         PoolGeometry g) {
  const int64_t n = g.planes * g.Ho * g.Wo;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < n; o += int64_t(gridDim.x) * blockDim.x) {
    const int ow = int(o % g.Wo), oh = int((o / g.Wo) % g.Ho);
    const int64_t plane = o / (int64_t(g.Ho) * g.Wo);
    const int best = window_argmax(x + plane * g.H * g.W, g, oh, ow);
    if (best >= 0) atomicAdd(gx + plane * g.H * g.W + best, grad[o]);
  }
}

// The divisor PyTorch uses for window (oh, ow): its size including padding (clipped to
// the padded image), or only the part inside the image. 0 means "all padding".
__device__ int avg_divisor(const PoolGeometry& g, int oh, int ow) {
  const int h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
  const int h1 = min(h0 + g.kh, g.H + g.ph), w1 = min(w0 + g.kw, g.W + g.pw);
  if (g.count_include_pad) return (h1 - h0) * (w1 - w0);
  const int hh = min(h1, g.H) - max(h0, 0), ww = min(w1, g.W) - max(w0, 0);
  return (hh > 0 && ww > 0) ? hh * ww : 0;
}

template <class T>
__global__ void avg_pool_kernel(const T* __restrict__ x, T* __restrict__ out, PoolGeometry g) {
  const int64_t n = g.planes * g.Ho * g.Wo;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < n; o += int64_t(gridDim.x) * blockDim.x) {
    const int ow = int(o % g.Wo), oh = int((o / g.Wo) % g.Ho);
    const T* xp = x + (o / (int64_t(g.Ho) * g.Wo)) * g.H * g.W;
    T sum = 0;
    for (int i = 0; i < g.kh; ++i) {
      const int h = oh * g.sh - g.ph + i;
      if (h < 0 || h >= g.H) continue;
      for (int j = 0; j < g.kw; ++j) {
        const int w = ow * g.sw - g.pw + j;
        if (w >= 0 && w < g.W) sum += xp[h * g.W + w];
      }
    }
    const int d = avg_divisor(g, oh, ow);
    out[o] = d > 0 ? sum / T(d) : T(0);
  }
}

template <class T>
__global__ void avg_pool_backward_kernel(const T* __restrict__ grad, T* __restrict__ gx, PoolGeometry g) {
  const int64_t n = g.planes * g.Ho * g.Wo;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < n; o += int64_t(gridDim.x) * blockDim.x) {
    const int ow = int(o % g.Wo), oh = int((o / g.Wo) % g.Ho);
    T* gp = gx + (o / (int64_t(g.Ho) * g.Wo)) * g.H * g.W;
    const int d = avg_divisor(g, oh, ow);
    if (d == 0) continue;
    const T share = grad[o] / T(d);
    for (int i = 0; i < g.kh; ++i) {
      const int h = oh * g.sh - g.ph + i;
      if (h < 0 || h >= g.H) continue;
      for (int j = 0; j < g.kw; ++j) {
        const int w = ow * g.sw - g.pw + j;
        if (w >= 0 && w < g.W) atomicAdd(gp + h * g.W + w, share);
      }
    }
  }
}

template <class F>
void floating(const Tensor& t, const char* op, F f) {
  if (t.dtype() == kFloat64) f(double{});
  else if (t.dtype() == kFloat32) f(float{});
  else throw Error(weft::detail::str(op, ": expected a floating-point tensor on the GPU, got ", t.dtype()));
}

void zero(const Tensor& t, const char* op) {
  WEFT_CUDA_CHECK(op, cudaMemsetAsync(t.raw_data(), 0, t.numel() * element_size(t.dtype()), detail::stream()));
}

}  // namespace

void max_pool2d(const Tensor& out, const Tensor& x_in, const Pool2dParams& p) {
  const Tensor x = raw::contiguous(x_in);
  const PoolGeometry g = geometry(x.shape(), out.shape(), p);
  floating(x, "max_pool2d", [&](auto z) {
    using T = decltype(z);
    max_pool_kernel<T><<<detail::blocks_for(out.numel()), detail::kThreads, 0, detail::stream()>>>(
        x.data<T>(), out.data<T>(), nullptr, g);
  });
  WEFT_CUDA_LAUNCH_CHECK("max_pool2d");
}

void max_pool2d_indices(const Tensor& out, const Tensor& x_in, const Pool2dParams& p) {
  const Tensor x = raw::contiguous(x_in);
  const PoolGeometry g = geometry(x.shape(), out.shape(), p);
  floating(x, "max_pool2d_indices", [&](auto z) {
    using T = decltype(z);
    max_pool_kernel<T><<<detail::blocks_for(out.numel()), detail::kThreads, 0, detail::stream()>>>(
        x.data<T>(), nullptr, out.data<int64_t>(), g);
  });
  WEFT_CUDA_LAUNCH_CHECK("max_pool2d_indices");
}

void max_pool2d_backward(const Tensor& gx, const Tensor& grad_in, const Tensor& x_in, const Pool2dParams& p) {
  const Tensor x = raw::contiguous(x_in), grad = raw::contiguous(grad_in);
  const PoolGeometry g = geometry(x.shape(), grad.shape(), p);
  zero(gx, "max_pool2d_backward");
  floating(x, "max_pool2d_backward", [&](auto z) {
    using T = decltype(z);
    max_pool_backward_kernel<T><<<detail::blocks_for(grad.numel()), detail::kThreads, 0, detail::stream()>>>(
        grad.data<T>(), x.data<T>(), gx.data<T>(), g);
  });
  WEFT_CUDA_LAUNCH_CHECK("max_pool2d_backward");
}

void avg_pool2d(const Tensor& out, const Tensor& x_in, const Pool2dParams& p) {
  const Tensor x = raw::contiguous(x_in);
  const PoolGeometry g = geometry(x.shape(), out.shape(), p);
  floating(x, "avg_pool2d", [&](auto z) {
    using T = decltype(z);
    avg_pool_kernel<T><<<detail::blocks_for(out.numel()), detail::kThreads, 0, detail::stream()>>>(
        x.data<T>(), out.data<T>(), g);
  });
  WEFT_CUDA_LAUNCH_CHECK("avg_pool2d");
}

void avg_pool2d_backward(const Tensor& gx, const Tensor& grad_in, const Pool2dParams& p) {
  const Tensor grad = raw::contiguous(grad_in);
  const PoolGeometry g = geometry(gx.shape(), grad.shape(), p);
  zero(gx, "avg_pool2d_backward");
  floating(gx, "avg_pool2d_backward", [&](auto z) {
    using T = decltype(z);
    avg_pool_backward_kernel<T><<<detail::blocks_for(grad.numel()), detail::kThreads, 0, detail::stream()>>>(
        grad.data<T>(), gx.data<T>(), g);
  });
  WEFT_CUDA_LAUNCH_CHECK("avg_pool2d_backward");
}

}  // namespace weft::cuda
