#include "host_allocator.h"

#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "error.h"

namespace weft {

namespace {

constexpr size_t kAlignment = 64;
constexpr size_t kCachedFrom = 64 * 1024;
constexpr size_t kPage = 4096;

struct Cache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_lists;  // rounded size -> blocks
  HostAllocatorStats stats;
  int64_t limit = [] {
    const char* env = std::getenv("WEFT_HOST_CACHE_MB");
    return (env ? std::atoll(env) : 1024) * int64_t{1024 * 1024};
  }();
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: tensors may outlive static teardown
  return *c;
}

size_t rounded(size_t n) { return (n + kPage - 1) / kPage * kPage; }

void* system_alloc(size_t n) {
  void* p = std::aligned_alloc(kAlignment, n);
  if (!p) throw Error(detail::str("storage: out of host memory allocating ", n, " bytes"));
  return p;
}

// Small blocks: plain malloc aligned by hand (glibc's aligned_alloc bypasses its
// per-thread cache for small sizes). The base pointer sits just before the block.
void* small_alloc(size_t n) {
  void* base = std::malloc(n + kAlignment);
  if (!base) throw Error(detail::str("storage: out of host memory allocating ", n, " bytes"));
  auto aligned = (reinterpret_cast<uintptr_t>(base) + kAlignment) & ~(uintptr_t{kAlignment} - 1);
  reinterpret_cast<void**>(aligned)[-1] = base;
  return reinterpret_cast<void*>(aligned);
}

void small_free(void* p) { std::free(static_cast<void**>(p)[-1]); }

}  // namespace

void* host_allocate(size_t nbytes) {
  if (nbytes < kCachedFrom) return small_alloc(nbytes);
  const size_t n = rounded(nbytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lk(c.mu);
    auto it = c.free_lists.find(n);
    if (it != c.free_lists.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.stats.cached_bytes -= static_cast<int64_t>(n);
      ++c.stats.hits;
      return p;
    }
    ++c.stats.misses;
  }
  return system_alloc(n);
}

void host_deallocate(void* p, size_t nbytes) {
  if (!p) return;
  if (nbytes < kCachedFrom) return small_free(p);
  const size_t n = rounded(nbytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lk(c.mu);
    if (c.stats.cached_bytes + static_cast<int64_t>(n) <= c.limit) {
      c.free_lists[n].push_back(p);
      c.stats.cached_bytes += static_cast<int64_t>(n);
      return;
    }
  }
  std::free(p);
}

HostAllocatorStats host_allocator_stats() {
  std::lock_guard<std::mutex> lk(cache().mu);
  return cache().stats;
}

void host_empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  for (auto& [_, blocks] : c.free_lists)
    for (void* p : blocks) std::free(p);
  c.free_lists.clear();
  c.stats.cached_bytes = 0;
}

void set_host_cache_limit(int64_t bytes) {
  WEFT_CHECK(bytes >= 0, "set_host_cache_limit: limit must be >= 0, got ", bytes);
  std::lock_guard<std::mutex> lk(cache().mu);
  cache().limit = bytes;
}

}  // namespace weft
