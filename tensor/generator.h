// Generator: seeded, counter-based random numbers (Philox 4x32-10).
//
// A counter-based generator maps (seed, counter) to random bits with no hidden state
// between draws, so element i of a random tensor depends only on the seed and i -- not
// on how many threads filled the tensor. The same scheme on the GPU gives the same
// dropout masks whatever the launch configuration.
//
// Each op that draws n numbers reserves a block of counters (reserve(n)) and then
// computes element i from counter base + i, in any order, on any thread.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <vector>

namespace weft {

class Tensor;

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) : seed_(seed) {}

  void manual_seed(uint64_t seed);
  uint64_t seed() const { return seed_; }
  // The next unused counter; saved in checkpoints to resume a random stream exactly.
  uint64_t offset() const;
  void set_offset(uint64_t offset);

  // Reserves `n` consecutive 128-bit counter blocks and returns the first.
  uint64_t reserve(uint64_t n);

  // The 4 random 32-bit words for counter `c` under `seed` (Philox 4x32, 10 rounds).
  static std::array<uint32_t, 4> philox(uint64_t seed, uint64_t c);
  // Uniform float in [0, 1) from a 32-bit word (24 bits of mantissa) and double (53 bits).
  static float to_unit_float(uint32_t x) { return (x >> 8) * (1.0f / 16777216.0f); }
  static double to_unit_double(uint32_t hi, uint32_t lo) {
    return ((static_cast<uint64_t>(hi) << 21) ^ (lo >> 11)) * (1.0 / 9007199254740992.0);
  }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
  mutable std::mutex mu_;
};

// ---- replaying draws (activation recomputation) ---------------------------------------
// Recomputing a forward pass (a pipeline stage that keeps only a microbatch's input and
// runs its forward again before the backward) must draw the same dropout masks. While a
// RecordDraws is alive on a thread, every reserve() made on that thread is logged in a
// DrawLog; while a ReplayDraws of that log is alive, the same reserves on this thread
// get the same counters back, in order, without advancing any generator -- whatever
// other threads drew in between. A replay that asks for a different draw than the log
// holds (another generator or count) is an error naming both.
struct DrawLog {
  struct Draw {
    const Generator* gen;
    uint64_t n, first;
  };
  std::vector<Draw> draws;
};
class RecordDraws {
 public:
  explicit RecordDraws(DrawLog& log);
  ~RecordDraws();
  RecordDraws(const RecordDraws&) = delete;
  RecordDraws& operator=(const RecordDraws&) = delete;

 private:
  DrawLog* previous_;
};
class ReplayDraws {
 public:
  explicit ReplayDraws(const DrawLog& log);
  ~ReplayDraws();
  ReplayDraws(const ReplayDraws&) = delete;
  ReplayDraws& operator=(const ReplayDraws&) = delete;

 private:
  const DrawLog* previous_log_;
  size_t previous_next_;
};

// The process-wide default generator, used when an op is not given one.
Generator& default_generator();
void manual_seed(uint64_t seed);

// A random permutation of 0..n-1 (int64), Fisher-Yates driven by the generator.
Tensor randperm(int64_t n, Generator& gen = default_generator());

}  // namespace weft
