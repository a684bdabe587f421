// Random fills. Element i of the (row-major) tensor uses Philox counter base + i, so the
// values depend on the seed alone, not on the thread count -- nor on the device: a GPU
// tensor gets the same counters (cuda/kernels/random.cu) and the same transforms
// (tensor/random_math.h), so it holds the same numbers as a CPU tensor from that seed.
#include "../backend.h"
#include "../generator.h"
#include "../random_math.h"
#include "../raw.h"
#include "loops.h"

namespace weft::raw {

namespace {
// Fills dst with f(words of counter i): a contiguous tensor (or a copy of it) in parallel
// on the CPU, or device_fill(seed, base) on another device. Either way n counters are reserved.
template <class F, class G>
void fill_random(const Tensor& dst, Generator& gen, const char* op, F f, G device_fill) {
  cpu::check_defined(op, dst);
  check_writable(op, dst);
  if (!dst.device().is_cpu()) {
    const uint64_t base = gen.reserve(static_cast<uint64_t>(dst.numel()));
    device_fill(gen.seed(), base);
    dst.storage()->bump_version();
    return;
  }
  Tensor buf = dst.is_contiguous() ? dst : empty(dst.shape(), dst.dtype(), dst.device());
  const int64_t n = buf.numel();
  const uint64_t base = gen.reserve(static_cast<uint64_t>(n));
  const uint64_t seed = gen.seed();
  dispatch_storage(dst.dtype(), [&]<class T>() {
    T* p = static_cast<T*>(buf.raw_data());
    parallel_for(0, n, 16384, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) p[i] = static_cast<T>(f(random_math::philox(seed, base + i)));
    });
  });
  if (!buf.is_same(dst)) copy_(dst, buf);
  dst.storage()->bump_version();
}
}  // namespace

void uniform_(const Tensor& dst, double lo, double hi, Generator& gen) {
  WEFT_CHECK(lo <= hi, "uniform_: lo ", lo, " is above hi ", hi);
  fill_random(
      dst, gen, "uniform_", [=](const random_math::Words& r) { return random_math::uniform(r, lo, hi); },
      [&](uint64_t seed, uint64_t base) { backend_for(dst).uniform(dst, lo, hi, seed, base); });
}

void normal_(const Tensor& dst, double mean, double std, Generator& gen) {
  WEFT_CHECK(std >= 0, "normal_: std must be >= 0, got ", std);
  fill_random(
      dst, gen, "normal_", [=](const random_math::Words& r) { return random_math::normal(r, mean, std); },
      [&](uint64_t seed, uint64_t base) { backend_for(dst).normal(dst, mean, std, seed, base); });
}

void bernoulli_(const Tensor& dst, double p, Generator& gen) {
  WEFT_CHECK(p >= 0 && p <= 1, "bernoulli_: p must be in [0, 1], got ", p);
  fill_random(
      dst, gen, "bernoulli_", [=](const random_math::Words& r) { return random_math::bernoulli(r, p); },
      [&](uint64_t seed, uint64_t base) { backend_for(dst).bernoulli(dst, p, seed, base); });
}

}  // namespace weft::raw
