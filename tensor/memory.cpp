#include "memory.h"

#include <array>
#include <atomic>
#include <cstdio>

#include "error.h"

namespace weft {

namespace {

struct Counter {
  std::atomic<int64_t> allocated{0}, peak{0}, allocations{0};
};

// One counter per (kind, index): fixed arrays, so counting takes no lock and no map.
constexpr int kMaxIndex = 256;
std::array<std::array<Counter, kMaxIndex>, 2> g_counters;

Counter& counter(Device d) {
  WEFT_CHECK(d.index >= 0 && d.index < kMaxIndex, "device memory: device index ", d.index, " of ", d,
             " is outside 0..", kMaxIndex - 1);
  return g_counters[static_cast<size_t>(d.kind)][static_cast<size_t>(d.index)];
}

}  // namespace

namespace detail {

void count_allocation(Device d, int64_t nbytes) {
  Counter& c = counter(d);
  const int64_t now = c.allocated.fetch_add(nbytes, std::memory_order_relaxed) + nbytes;
  c.allocations.fetch_add(1, std::memory_order_relaxed);
  int64_t peak = c.peak.load(std::memory_order_relaxed);
  while (now > peak && !c.peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

void count_free(Device d, int64_t nbytes) { counter(d).allocated.fetch_sub(nbytes, std::memory_order_relaxed); }

}  // namespace detail

DeviceMemory device_memory(Device d) {
  const Counter& c = counter(d);
  return {c.allocated.load(), c.peak.load(), c.allocations.load()};
}

void reset_device_peak(Device d) {
  Counter& c = counter(d);
  c.peak.store(c.allocated.load());
}

std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while ((v >= 1024 || v <= -1024) && u < 4) v /= 1024, ++u;
  char buf[32];
  if (u == 0) std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  else std::snprintf(buf, sizeof buf, v < 10 && v > -10 ? "%.2f %s" : "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace weft
