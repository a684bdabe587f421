// Random fills on the GPU: uniform, normal and bernoulli, identical to tensor/cpu/random.cpp.
//
// Element i of dst (in row-major order, whatever dst's strides) gets the Philox words of
// counter offset + i under key `seed` -- the same counter the CPU loop uses -- and the
// same transform from tensor/random_math.h. So a seeded GPU tensor equals the CPU one,
// and no value depends on the launch configuration. The caller reserved numel counters
// from its Generator (offset is the first).
#include "../../tensor/random_math.h"
#include "../kernels.h"
#include "common.cuh"

namespace weft::cuda {

using namespace kern;

namespace {

struct UniformF {
  double lo, hi;
  __device__ double operator()(const random_math::Words& r) const { return random_math::uniform(r, lo, hi); }
};
struct NormalF {
  double mean, std;
  __device__ double operator()(const random_math::Words& r) const { return random_math::normal(r, mean, std); }
};
struct BernoulliF {
  double p;
  __device__ double operator()(const random_math::Words& r) const { return random_math::bernoulli(r, p); }
};

template <class T, class F>
__global__ void random_kernel(int64_t n, T* p, OffsetCalc<1> c, uint64_t seed, uint64_t base, F f) {
  for (int64_t i = global_thread(); i < n; i += grid_threads())
    p[c.get(i)[0]] = static_cast<T>(f(random_math::philox(seed, base + static_cast<uint64_t>(i))));
}

template <class F>
void fill_random(const char* op, const Tensor& dst, uint64_t seed, uint64_t offset, F f) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  const OffsetCalc<1> c = make_calc<1>(dst.shape(), {&dst});
  dispatch_all(dst.dtype(), [&]<class T>() {
    random_kernel<T><<<detail::blocks_for(n), detail::kThreads, 0, detail::stream()>>>(n, ptr<T>(dst), c, seed,
                                                                                       offset, f);
  });
  WEFT_CUDA_LAUNCH_CHECK(op);
}

}  // namespace

void uniform(const Tensor& dst, double lo, double hi, uint64_t seed, uint64_t offset) {
  fill_random("uniform_", dst, seed, offset, UniformF{lo, hi});
}

void normal(const Tensor& dst, double mean, double std, uint64_t seed, uint64_t offset) {
  fill_random("normal_", dst, seed, offset, NormalF{mean, std});
}

void bernoulli(const Tensor& dst, double p, uint64_t seed, uint64_t offset) {
  fill_random("bernoulli_", dst, seed, offset, BernoulliF{p});
}

}  // namespace weft::cuda
