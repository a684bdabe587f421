#include "generator.h"

#include "creation.h"
#include "error.h"
#include "random_math.h"
#include "tensor.h"

namespace weft {

void Generator::manual_seed(uint64_t seed) {
  std::lock_guard<std::mutex> lk(mu_);
  seed_ = seed;
  offset_ = 0;
}

uint64_t Generator::offset() const {
  std::lock_guard<std::mutex> lk(mu_);
  return offset_;
}

void Generator::set_offset(uint64_t offset) {
  std::lock_guard<std::mutex> lk(mu_);
  offset_ = offset;
}

uint64_t Generator::reserve(uint64_t n) {
  std::lock_guard<std::mutex> lk(mu_);
  const uint64_t first = offset_;
  offset_ += n;
  return first;
}

std::array<uint32_t, 4> Generator::philox(uint64_t seed, uint64_t c) {
  // The one implementation, shared with the GPU kernels (random_math.h).
  const random_math::Words r = random_math::philox(seed, c);
  return {r.w[0], r.w[1], r.w[2], r.w[3]};
}

Generator& default_generator() {
  static Generator gen;
  return gen;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

Tensor randperm(int64_t n, Generator& gen) {
  WEFT_CHECK(n >= 0, "randperm: n must be >= 0, got ", n);
  Tensor out = arange(0, static_cast<double>(n), 1, kInt64);
  int64_t* p = out.data<int64_t>();
  const uint64_t base = gen.reserve(static_cast<uint64_t>(n));
  for (int64_t i = n - 1; i > 0; --i) {
    const auto r = Generator::philox(gen.seed(), base + i);
    const uint64_t bits = (static_cast<uint64_t>(r[0]) << 32) | r[1];
    std::swap(p[i], p[bits % static_cast<uint64_t>(i + 1)]);
  }
  return out;
}

}  // namespace weft
