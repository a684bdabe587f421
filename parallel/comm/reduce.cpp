#include "reduce.h"

#include "../../tensor/half.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace weft::parallel {
namespace {

// Elements per block: 2048 float32 = 8 KiB, so the accumulator and one block of each
// source stay in L1 while a rank sweeps its slice.
constexpr int64_t kBlock = 2048;

template <class T>
void combine(T* __restrict dst, const T* __restrict src, int64_t n, ReduceOp op) {
  if (op == ReduceOp::Max) {
    for (int64_t i = 0; i < n; ++i) dst[i] = std::max(dst[i], src[i]);
  } else {  // Sum and Mean both add; Mean divides at the end
    for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
  }
}

template <class T>
void divide(T* data, int64_t n, int world) {
  if constexpr (std::is_integral_v<T>) {
    for (int64_t i = 0; i < n; ++i) data[i] /= world;
  } else {
    const T inv = T(1) / T(world);  // one multiply per element instead of a division
    for (int64_t i = 0; i < n; ++i) data[i] *= inv;
  }
}

template <class F>
void dispatch(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Float32: f.template operator()<float>(); return;
    case DType::Float64: f.template operator()<double>(); return;
    case DType::Int64: f.template operator()<int64_t>(); return;
    default: throw Error(detail::str("reduce: dtype ", dtype_name(dtype), " is not supported"));
  }
}

// 16-bit values (bfloat16, float16) are combined in float32: widened block by block,
// reduced there, rounded once on the way out. A shared-memory all-reduce, which sees
// every rank's values at once, so rounds once in all; a ring, whose hops each carry a
// 16-bit partial sum, rounds at every hop, like the data it sends.
template <class F>
void dispatch16(DType dtype, F&& f) {
  if (dtype == DType::BFloat16) f.template operator()<bfloat16>();
  else f.template operator()<float16>();
}

template <class H>
void widen(const H* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

template <class H>
void narrow(const float* src, H* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = H(src[i]);
}

// out = srcs[0] (op) srcs[1] (op) ... (/ world for Mean), each a block of n <= kBlock
// 16-bit values; `out` may be one of the sources.
template <class H>
void combine16(H* out, const H* const* srcs, int count, int64_t n, ReduceOp op, int world_for_mean) {
  alignas(64) float acc[kBlock], tmp[kBlock];
  widen(srcs[0], acc, n);
  for (int q = 1; q < count; ++q) {
    widen(srcs[q], tmp, n);
    combine(acc, tmp, n, op);
  }
  if (op == ReduceOp::Mean && world_for_mean > 1) divide(acc, n, world_for_mean);
  narrow(acc, out, n);
}

}  // namespace

void reduce_into(void* dst, const void* src, int64_t n, DType dtype, ReduceOp op) {
  if (is_half(dtype)) {  // Mean adds here too: finish_mean divides
    return dispatch16(dtype, [&]<class H>() {
      for (int64_t b = 0; b < n; b += kBlock) {
        const H* pair[2] = {static_cast<H*>(dst) + b, static_cast<const H*>(src) + b};
        combine16(static_cast<H*>(dst) + b, pair, 2, std::min(kBlock, n - b), op, 1);
      }
    });
  }
  dispatch(dtype, [&]<class T>() { combine(static_cast<T*>(dst), static_cast<const T*>(src), n, op); });
}

void finish_mean(void* data, int64_t n, DType dtype, ReduceOp op, int world) {
  if (op != ReduceOp::Mean || world == 1) return;
  if (is_half(dtype)) {
    return dispatch16(dtype, [&]<class H>() {
      for (int64_t b = 0; b < n; b += kBlock) {
        const H* one[1] = {static_cast<H*>(data) + b};
        combine16(static_cast<H*>(data) + b, one, 1, std::min(kBlock, n - b), op, world);
      }
    });
  }
  dispatch(dtype, [&]<class T>() { divide(static_cast<T*>(data), n, world); });
}

namespace {

// The fused loop for a world size known at compile time: the N loads, the reduction and
// the N stores of element i sit in one loop body, which the compiler vectorises (a
// runtime N would put a loop over ranks inside the element loop and stop it).
template <int N, class T>
void fused_fixed(T* const* bufs, int64_t begin, int64_t end, ReduceOp op) {
  T* __restrict p[N];
  for (int q = 0; q < N; ++q) p[q] = bufs[q];
  const T inv = T(1) / T(N);
  auto finish = [&](T s) {
    if (op != ReduceOp::Mean) return s;
    if constexpr (std::is_integral_v<T>) return T(s / N);
    else return T(s * inv);
  };
  if (op == ReduceOp::Max) {
    for (int64_t i = begin; i < end; ++i) {
      T s = p[0][i];
      for (int q = 1; q < N; ++q) s = std::max(s, p[q][i]);
      for (int q = 0; q < N; ++q) p[q][i] = s;
    }
  } else {
    for (int64_t i = begin; i < end; ++i) {
      T s = p[0][i];
      for (int q = 1; q < N; ++q) s += p[q][i];
      s = finish(s);
      for (int q = 0; q < N; ++q) p[q][i] = s;
    }
  }
}

// Any world size: reduce one L1-sized block into an accumulator, then copy it out.
template <class T>
void fused_blocked(T* const* bufs, int world, int64_t begin, int64_t end, ReduceOp op) {
  alignas(64) T acc[kBlock];
  for (int64_t b = begin; b < end; b += kBlock) {
    const int64_t len = std::min(kBlock, end - b);
    std::memcpy(acc, bufs[0] + b, len * sizeof(T));
    for (int q = 1; q < world; ++q) combine(acc, bufs[q] + b, len, op);
    if (op == ReduceOp::Mean) divide(acc, len, world);
    for (int q = 0; q < world; ++q) std::memcpy(bufs[q] + b, acc, len * sizeof(T));
  }
}

}  // namespace

void reduce_and_scatter_back(std::span<void* const> bufs, int64_t begin, int64_t end,
                             DType dtype, ReduceOp op) {
  const int world = static_cast<int>(bufs.size());
  if (is_half(dtype)) {
    return dispatch16(dtype, [&]<class H>() {
      std::vector<const H*> srcs(world);
      alignas(64) H out[kBlock];
      for (int64_t b = begin; b < end; b += kBlock) {
        const int64_t len = std::min(kBlock, end - b);
        for (int q = 0; q < world; ++q) srcs[q] = static_cast<const H*>(bufs[q]) + b;
        combine16(out, srcs.data(), world, len, op, world);
        for (int q = 0; q < world; ++q) std::memcpy(static_cast<H*>(bufs[q]) + b, out, len * sizeof(H));
      }
    });
  }
  dispatch(dtype, [&]<class T>() {
    std::vector<T*> p(world);
    for (int q = 0; q < world; ++q) p[q] = static_cast<T*>(bufs[q]);
    switch (world) {
      case 2: fused_fixed<2>(p.data(), begin, end, op); break;
      case 3: fused_fixed<3>(p.data(), begin, end, op); break;
      case 4: fused_fixed<4>(p.data(), begin, end, op); break;
      default: fused_blocked(p.data(), world, begin, end, op);
    }
  });
}

void reduce_many(void* out, std::span<const void* const> srcs, int64_t n, DType dtype, ReduceOp op) {
  const int world = static_cast<int>(srcs.size());
  if (is_half(dtype)) {
    return dispatch16(dtype, [&]<class H>() {
      std::vector<const H*> block(world);
      for (int64_t b = 0; b < n; b += kBlock) {
        for (int q = 0; q < world; ++q) block[q] = static_cast<const H*>(srcs[q]) + b;
        combine16(static_cast<H*>(out) + b, block.data(), world, std::min(kBlock, n - b), op, world);
      }
    });
  }
  dispatch(dtype, [&]<class T>() {
    alignas(64) T acc[kBlock];
    for (int64_t b = 0; b < n; b += kBlock) {
      const int64_t len = std::min(kBlock, n - b);
      std::memcpy(acc, static_cast<const T*>(srcs[0]) + b, len * sizeof(T));
      for (int q = 1; q < world; ++q) combine(acc, static_cast<const T*>(srcs[q]) + b, len, op);
      if (op == ReduceOp::Mean) divide(acc, len, world);
      std::memcpy(static_cast<T*>(out) + b, acc, len * sizeof(T));
    }
  });
}

}  // namespace weft::parallel
