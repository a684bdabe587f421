#include "reduce.h"

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

}  // namespace

void reduce_into(void* dst, const void* src, int64_t n, DType dtype, ReduceOp op) {
  dispatch(dtype, [&]<class T>() { combine(static_cast<T*>(dst), static_cast<const T*>(src), n, op); });
}

void finish_mean(void* data, int64_t n, DType dtype, ReduceOp op, int world) {
  if (op != ReduceOp::Mean || world == 1) return;
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
