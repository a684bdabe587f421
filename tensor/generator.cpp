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

namespace {
thread_local DrawLog* t_recording = nullptr;        // RecordDraws
thread_local const DrawLog* t_replaying = nullptr;  // ReplayDraws, and its next draw
thread_local size_t t_replay_next = 0;
}  // namespace

uint64_t Generator::reserve(uint64_t n) {
  if (t_replaying) {
    WEFT_CHECK(t_replay_next < t_replaying->draws.size(), "replaying random draws: the recomputed pass draws more ",
               "often (", t_replay_next + 1, " draws) than the recorded one (", t_replaying->draws.size(), ")");
    const DrawLog::Draw& d = t_replaying->draws[t_replay_next++];
    WEFT_CHECK(d.gen == this && d.n == n, "replaying random draws: draw ", t_replay_next, " asks for ", n,
               " counters", d.gen == this ? "" : " of another generator", ", the recorded one for ", d.n);
    return d.first;
  }
  uint64_t first;
  {
    std::lock_guard<std::mutex> lk(mu_);
    first = offset_;
    offset_ += n;
  }
  if (t_recording) t_recording->draws.push_back({this, n, first});
  return first;
}

RecordDraws::RecordDraws(DrawLog& log) : previous_(t_recording) { t_recording = &log; }
RecordDraws::~RecordDraws() { t_recording = previous_; }

ReplayDraws::ReplayDraws(const DrawLog& log) : previous_log_(t_replaying), previous_next_(t_replay_next) {
  t_replaying = &log, t_replay_next = 0;
}
ReplayDraws::~ReplayDraws() { t_replaying = previous_log_, t_replay_next = previous_next_; }

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
