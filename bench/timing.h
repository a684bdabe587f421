// Timing helpers shared by the C++ benchmarks.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace weft::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Seconds per call of f: `warmup` calls first (caches, JIT, weft's per-shape GEMM
// measurement), then the best of five rounds of ~min_seconds / 5 each. The best, not
// the mean: on a shared machine the noise only ever adds time.
template <class F>
double best_seconds_per_call(F&& f, double min_seconds, int warmup = 2) {
  for (int i = 0; i < warmup; ++i) f();
  double best = 1e30;
  for (int round = 0; round < 5; ++round) {
    int64_t reps = 0;
    const auto t0 = Clock::now();
    do {
      f();
      ++reps;
    } while (seconds_since(t0) < min_seconds / 5);
    best = std::min(best, seconds_since(t0) / static_cast<double>(reps));
  }
  return best;
}

}  // namespace weft::bench
