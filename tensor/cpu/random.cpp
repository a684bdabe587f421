// Random fills. Element i of the (row-major) tensor uses Philox counter base + i, so the
// values depend on the seed alone, not on the thread count.
#include <cmath>
#include <numbers>

#include "../generator.h"
#include "../raw.h"

namespace weft::raw {

namespace {
// Fills a contiguous tensor (or a copy of it) with f(words of counter i), in parallel.
template <class F>
void fill_random(const Tensor& dst, Generator& gen, const char* op, F f) {
  check_cpu(op, dst);
  Tensor buf = dst.is_contiguous() ? dst : empty(dst.shape(), dst.dtype(), dst.device());
  const int64_t n = buf.numel();
  const uint64_t base = gen.reserve(static_cast<uint64_t>(n));
  const uint64_t seed = gen.seed();
  dispatch_all(dst.dtype(), [&]<class T>() {
    T* p = static_cast<T*>(buf.raw_data());
    parallel_for(0, n, 16384, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) p[i] = static_cast<T>(f(Generator::philox(seed, base + i)));
    });
  });
  if (!buf.is_same(dst)) copy_(dst, buf);
  dst.storage()->bump_version();
}
}  // namespace

void uniform_(const Tensor& dst, double lo, double hi, Generator& gen) {
  WEFT_CHECK(lo <= hi, "uniform_: lo ", lo, " is above hi ", hi);
  fill_random(dst, gen, "uniform_", [=](const std::array<uint32_t, 4>& r) {
    return lo + (hi - lo) * Generator::to_unit_double(r[0], r[1]);
  });
}

void normal_(const Tensor& dst, double mean, double std, Generator& gen) {
  WEFT_CHECK(std >= 0, "normal_: std must be >= 0, got ", std);
  fill_random(dst, gen, "normal_", [=](const std::array<uint32_t, 4>& r) {
    // Box-Muller; 1 - u keeps the log argument in (0, 1].
    const double u1 = 1.0 - Generator::to_unit_double(r[0], r[1]), u2 = Generator::to_unit_double(r[2], r[3]);
    return mean + std * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  });
}

void bernoulli_(const Tensor& dst, double p, Generator& gen) {
  WEFT_CHECK(p >= 0 && p <= 1, "bernoulli_: p must be in [0, 1], got ", p);
  fill_random(dst, gen, "bernoulli_", [=](const std::array<uint32_t, 4>& r) {
    return Generator::to_unit_double(r[0], r[1]) < p ? 1.0 : 0.0;
  });
}

}  // namespace weft::raw
