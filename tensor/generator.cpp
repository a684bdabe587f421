#include "generator.h"

#include "creation.h"
#include "error.h"
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
  // Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC 2011).
  constexpr uint32_t kM0 = 0xD2511F53, kM1 = 0xCD9E8D57, kW0 = 0x9E3779B9, kW1 = 0xBB67AE85;
  uint32_t x0 = static_cast<uint32_t>(c), x1 = static_cast<uint32_t>(c >> 32), x2 = 0, x3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(kM0) * x0, p1 = static_cast<uint64_t>(kM1) * x2;
    const uint32_t y0 = static_cast<uint32_t>(p1 >> 32) ^ x1 ^ k0, y1 = static_cast<uint32_t>(p1);
    const uint32_t y2 = static_cast<uint32_t>(p0 >> 32) ^ x3 ^ k1, y3 = static_cast<uint32_t>(p0);
    x0 = y0, x1 = y1, x2 = y2, x3 = y3;
    k0 += kW0, k1 += kW1;
  }
  return {x0, x1, x2, x3};
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
