// Reductions on the GPU: sum, mean, max, min over any set of dims, and argmax/argmin,
// the twins of tensor/cpu/reduce.cpp.
//
// a is seen as K output rows of R reduced elements each, whatever its strides: the kept
// dims (merged where memory allows) map output k to a base offset, the reduced dims map
// r in [0, R) to an offset from there. Which of the two walks memory with stride 1
// picks the kernel:
//   - rows: the reduced dims are innermost (a row sum, (N,C) -> (N), or the bias
//     gradient of a convolution, (N,K,H,W) -> (K), whose H*W runs are reduced). A warp
//     per row when rows are short, a block per row when long; consecutive threads read
//     consecutive elements.
//   - columns: the kept dims are innermost (the bias gradient of a Linear, (N,C) -> (C):
//     out[j] = sum_i a[i][j]). Each thread owns one output and walks down its column,
//     so a warp reads 32 neighbouring elements of one row at a time.
// When there are few outputs and long reductions, both split R over several blocks that
// write partial results to a workspace, and a small kernel combines the partials in a
// fixed order: results never depend on timing (no atomics).
//
// Floats accumulate in double, like the CPU; max/min propagate NaN.
#include <limits>

#include "../kernels.h"
#include "common.cuh"

namespace weft::cuda {

using namespace kern;

namespace {

// ---- the four reductions as accumulators ------------------------------------------------
template <class T>
struct SumOp {
  using A = acc_t<T>;
  __device__ A init() const { return A(0); }
  __device__ A add(A acc, T v) const { return acc + A(v); }
  __device__ A combine(A x, A y) const { return x + y; }
  __device__ T finish(A acc, int64_t) const { return T(acc); }
};
template <class T>
struct MeanOp : SumOp<T> {
  using A = acc_t<T>;
  __device__ T finish(A acc, int64_t n) const { return T(acc / A(n)); }
};
template <class T, bool kMax>
struct ExtremeOp {
  using A = T;
  __device__ A init() const {
    if constexpr (std::is_floating_point_v<T>) return kMax ? -INFINITY : INFINITY;
    else return kMax ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
  }
  // A NaN, once seen, sticks: v > NaN is false and NaN != NaN.
  __device__ A add(A acc, T v) const { return (kMax ? v > acc : v < acc) || v != v ? v : acc; }
  __device__ A combine(A x, A y) const { return add(x, y); }
  __device__ T finish(A acc, int64_t) const { return acc; }
};

// Offsets of the reduced elements: the innermost reduced run (length L, stride sL)
// inline, the rest through an OffsetCalc (ndim 0 when there is no rest).
struct ReducedCalc {
  int64_t L, sL;
  OffsetCalc<1> outer;
  __device__ int64_t get(int64_t r) const {
    if (outer.ndim == 0) return r * sL;
    const int64_t q = r / L;
    return outer.get(q)[0] + (r - q * L) * sL;
  }
};

struct Plan {
  int64_t K, R;          // outputs, elements per output
  OffsetCalc<1> kept;    // output index -> base offset in a
  ReducedCalc red;       // reduced index -> offset from the base
  bool rows;             // the reduced run is the inner one in memory
};

// Splits a's dims into kept and reduced lists and merges each.
Plan make_plan(const Tensor& a, const std::array<bool, kMaxDims>& mask) {
  Shape ks, rs;
  Strides kst, rst;
  for (int64_t d = 0; d < a.dim(); ++d) {
    (mask[d] ? rs : ks).push_back(a.shape()[d]);
    (mask[d] ? rst : kst).push_back(a.strides()[d]);
  }
  Plan p;
  p.K = ks.numel();
  p.R = rs.numel();
  p.kept = make_calc<1>(ks, {kst});
  const OffsetCalc<1> r = make_calc<1>(rs, {rst});
  p.red.L = r.ndim ? r.size[0] : 1;
  p.red.sL = r.ndim ? r.stride[0][0] : 0;
  // The rest of the reduced dims, without the innermost one.
  p.red.outer.ndim = r.ndim > 1 ? r.ndim - 1 : 0;
  p.red.outer.narrow = r.narrow;
  for (int d = 1; d < r.ndim; ++d) {
    p.red.outer.size[d - 1] = r.size[d];
    p.red.outer.stride[d - 1][0] = r.stride[d][0];
  }
  const int64_t kept_inner = p.kept.ndim ? std::abs(p.kept.stride[0][0]) : std::numeric_limits<int64_t>::max();
  p.rows = std::abs(p.red.sL) <= kept_inner;
  return p;
}

// ---- rows: a group of G threads (a warp or the whole block) per output ------------------
// Block b.x handles outputs b.x*(256/G) + group, split s = b.y covers reduced elements
// [s*chunk, (s+1)*chunk). With one split the group writes the final value to out, else
// its partial to ws[s*K + k].
template <int G, class T, class Op>
__global__ void __launch_bounds__(256) reduce_rows_kernel(const T* __restrict__ a, T* __restrict__ out,
                                                          typename Op::A* __restrict__ ws, Plan p, int64_t chunk,
                                                          Op op) {
  using A = typename Op::A;
  __shared__ A scratch[32];
  constexpr int kGroups = 256 / G;
  const int group = threadIdx.x / G, lane = threadIdx.x % G;
  const int64_t r0 = blockIdx.y * chunk, r1 = min(p.R, r0 + chunk);
  for (int64_t k0 = blockIdx.x * int64_t(kGroups); k0 < p.K; k0 += int64_t(gridDim.x) * kGroups) {
    const int64_t k = k0 + group;  // uniform per group; whole blocks loop together (syncs)
    A acc = op.init();
    if (k < p.K) {
      const T* row = a + p.kept.get(k)[0];
      if (p.red.outer.ndim == 0) {
        // One strided run: four loads in flight per thread, four partial results.
        const int64_t s = p.red.sL;
        A acc1 = op.init(), acc2 = op.init(), acc3 = op.init();
        int64_t r = r0 + lane;
        for (; r + 3 * G < r1; r += 4 * G) {
          acc = op.add(acc, row[r * s]);
          acc1 = op.add(acc1, row[(r + G) * s]);
          acc2 = op.add(acc2, row[(r + 2 * G) * s]);
          acc3 = op.add(acc3, row[(r + 3 * G) * s]);
        }
        for (; r < r1; r += G) acc = op.add(acc, row[r * s]);
        acc = op.combine(op.combine(acc, acc1), op.combine(acc2, acc3));
      } else {
        for (int64_t r = r0 + lane; r < r1; r += G) acc = op.add(acc, row[p.red.get(r)]);
      }
    }
    auto f = [op](A x, A y) { return op.combine(x, y); };
    if constexpr (G == 32) acc = warp_all_reduce(acc, f);
    else acc = block_all_reduce(acc, f, scratch);
    if (lane == 0 && k < p.K) {
      if (gridDim.y == 1) out[k] = op.finish(acc, p.R);
      else ws[blockIdx.y * p.K + k] = acc;
    }
  }
}

// ---- columns: a thread per output, 8 threads down each column of a 32x8 block -----------
template <class T, class Op>
__global__ void __launch_bounds__(256) reduce_cols_kernel(const T* __restrict__ a, T* __restrict__ out,
                                                          typename Op::A* __restrict__ ws, Plan p, Op op) {
  using A = typename Op::A;
  __shared__ A part[8][33];
  const int64_t k = blockIdx.x * 32 + threadIdx.x;
  A acc = op.init();
  if (k < p.K) {
    const T* col = a + p.kept.get(k)[0];
    for (int64_t r = blockIdx.y * 8 + threadIdx.y; r < p.R; r += gridDim.y * 8) acc = op.add(acc, col[p.red.get(r)]);
  }
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && k < p.K) {
    for (int y = 1; y < 8; ++y) acc = op.combine(acc, part[y][threadIdx.x]);
    if (gridDim.y == 1) out[k] = op.finish(acc, p.R);
    else ws[blockIdx.y * p.K + k] = acc;
  }
}

// out[k] = finish(combine of ws[s*K + k] over s), in order s = 0, 1, ...
template <class T, class Op>
__global__ void finish_kernel(const typename Op::A* __restrict__ ws, T* __restrict__ out, int64_t K, int splits,
                              int64_t R, Op op) {
  for (int64_t k = global_thread(); k < K; k += grid_threads()) {
    typename Op::A acc = ws[k];
    for (int s = 1; s < splits; ++s) acc = op.combine(acc, ws[s * K + k]);
    out[k] = op.finish(acc, R);
  }
}

constexpr int64_t kTargetBlocks = 1024;  // enough to fill an H100 (132 SMs) several times

template <class T, class Op>
void launch_reduce(const Tensor& out, const Tensor& a, const Plan& p, Op op) {
  using A = typename Op::A;
  cudaStream_t s = detail::stream();
  const T* ap = ptr<const T>(a);
  T* op_out = ptr<T>(out);
  int64_t splits = 1;
  dim3 grid;
  bool block_rows = false;
  if (p.rows) {
    block_rows = p.R > 1024;
    const int64_t groups = block_rows ? 1 : 8;
    const int64_t blocks = std::min<int64_t>((p.K + groups - 1) / groups, 65535);
    if (block_rows && blocks < kTargetBlocks)  // few long rows: split each, >= 4096 per block
      splits = std::max<int64_t>(1, std::min<int64_t>((p.R + 4095) / 4096, kTargetBlocks / blocks));
    grid = dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(splits));
  } else {
    const int64_t blocks = (p.K + 31) / 32;  // K <= 2^31 * 32 in practice
    splits = std::max<int64_t>(1, std::min<int64_t>({(p.R + 127) / 128, kTargetBlocks / blocks, 65535}));
    grid = dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(splits));
  }
  Tensor ws;
  A* wsp = nullptr;
  if (splits > 1) {
    ws = empty({splits, p.K}, dtype_of<A>(), out.device());
    wsp = ptr<A>(ws);
  }
  if (p.rows) {
    const int64_t chunk = (p.R + splits - 1) / splits;
    if (block_rows)
      reduce_rows_kernel<256, T, Op><<<grid, 256, 0, s>>>(ap, op_out, wsp, p, chunk, op);
    else
      reduce_rows_kernel<32, T, Op><<<grid, 256, 0, s>>>(ap, op_out, wsp, p, chunk, op);
  } else {
    reduce_cols_kernel<T, Op><<<grid, dim3(32, 8), 0, s>>>(ap, op_out, wsp, p, op);
  }
  WEFT_CUDA_LAUNCH_CHECK("reduce");
  if (splits > 1) {
    finish_kernel<T, Op><<<detail::blocks_for(p.K), detail::kThreads, 0, s>>>(wsp, op_out, p.K, int(splits), p.R, op);
    WEFT_CUDA_LAUNCH_CHECK("reduce");
  }
}

const char* reduce_name(raw::Reduce op) {
  switch (op) {
    case raw::Reduce::Sum: return "sum";
    case raw::Reduce::Mean: return "mean";
    case raw::Reduce::Max: return "max";
    case raw::Reduce::Min: return "min";
  }
  return "reduce";
}

// ---- argmax / argmin: G threads per output (8 for rows up to 16 long, else a warp) -------
// The CPU rule: the first NaN wins; otherwise the first index of the best value.
template <class T, bool kMax>
struct ArgBest {
  T v;
  int64_t i;
};
template <class T, bool kMax>
__device__ ArgBest<T, kMax> better(ArgBest<T, kMax> x, ArgBest<T, kMax> y) {
  const bool xn = x.v != x.v, yn = y.v != y.v;
  if (xn || yn) return (xn && yn) ? (x.i < y.i ? x : y) : (xn ? x : y);
  if (kMax ? y.v > x.v : y.v < x.v) return y;
  if (kMax ? x.v > y.v : x.v < y.v) return x;
  return x.i < y.i ? x : y;
}

template <int G, class T, bool kMax>
__global__ void argreduce_kernel(const T* __restrict__ a, int64_t* __restrict__ out, int64_t K, int64_t n,
                                 int64_t stride, OffsetCalc<1> kept) {
  constexpr int kPerWarp = 32 / G;
  const int lane = threadIdx.x % G, group = (threadIdx.x % 32) / G;
  const int64_t warps = grid_threads() / 32;
  // The loop runs per warp (not per group), so all 32 lanes reach every shuffle.
  for (int64_t k0 = global_thread() / 32 * kPerWarp; k0 < K; k0 += warps * kPerWarp) {
    const int64_t k = k0 + group;
    ArgBest<T, kMax> best{T(0), 0};
    if (k < K) {
      const T* row = a + kept.get(k)[0];
      best.v = row[0];
      for (int64_t j = lane; j < n; j += G) best = better(best, ArgBest<T, kMax>{row[j * stride], j});
    }
#pragma unroll
    for (int o = G / 2; o > 0; o >>= 1) {
      ArgBest<T, kMax> other{__shfl_xor_sync(0xffffffffu, best.v, o), __shfl_xor_sync(0xffffffffu, best.i, o)};
      best = better(best, other);
    }
    if (lane == 0 && k < K) out[k] = best.i;
  }
}

}  // namespace

void reduce(raw::Reduce op, const Tensor& out, const Tensor& a, const Shape& dims) {
  const char* name = reduce_name(op);
  std::array<bool, kMaxDims> mask{};
  for (int64_t d : dims) mask[d] = true;
  const Plan p = make_plan(a, mask);
  if (p.K == 0) return;
  dispatch_numeric(a.dtype(), name, [&]<class T>() {
    switch (op) {
      case raw::Reduce::Sum: return launch_reduce<T>(out, a, p, SumOp<T>{});
      case raw::Reduce::Mean: return launch_reduce<T>(out, a, p, MeanOp<T>{});
      case raw::Reduce::Max: return launch_reduce<T>(out, a, p, ExtremeOp<T, true>{});
      case raw::Reduce::Min: return launch_reduce<T>(out, a, p, ExtremeOp<T, false>{});
    }
  });
}

void argreduce(bool is_max, const Tensor& out, const Tensor& a, int64_t dim) {
  const char* name = is_max ? "argmax" : "argmin";
  std::array<bool, kMaxDims> mask{};
  if (a.dim() > 0) mask[dim] = true;
  const Plan p = make_plan(a, mask);
  const int64_t n = a.dim() > 0 ? a.shape()[dim] : 1, stride = a.dim() > 0 ? a.strides()[dim] : 0;
  if (p.K == 0) return;
  const bool short_rows = n <= 16;
  const unsigned blocks = detail::blocks_for(short_rows ? (p.K + 3) / 4 * 32 : p.K * 32);
  cudaStream_t s = detail::stream();
  dispatch_numeric(a.dtype(), name, [&]<class T>() {
    const T* ap = ptr<const T>(a);
    int64_t* o = ptr<int64_t>(out);
    if (short_rows && is_max) argreduce_kernel<8, T, true><<<blocks, detail::kThreads, 0, s>>>(ap, o, p.K, n, stride, p.kept);
    if (short_rows && !is_max) argreduce_kernel<8, T, false><<<blocks, detail::kThreads, 0, s>>>(ap, o, p.K, n, stride, p.kept);
    if (!short_rows && is_max) argreduce_kernel<32, T, true><<<blocks, detail::kThreads, 0, s>>>(ap, o, p.K, n, stride, p.kept);
    if (!short_rows && !is_max) argreduce_kernel<32, T, false><<<blocks, detail::kThreads, 0, s>>>(ap, o, p.K, n, stride, p.kept);
  });
  WEFT_CUDA_LAUNCH_CHECK(name);
}

}  // namespace weft::cuda
