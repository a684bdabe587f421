// A caching allocator for device memory, the way PyTorch's works in miniature.
//
// cudaMalloc and cudaFree are slow (they synchronise the device) and cudaMalloc cannot
// run while a CUDA graph is being captured. So freed blocks are never given back to
// CUDA: they go on a free list keyed by (pool, stream), ordered by size, and the next
// request of a similar size on the same stream takes the smallest block that fits.
// A training step that repeats the same shapes thus reaches a steady state with zero
// cudaMalloc calls -- memory_stats().malloc_calls lets tests and users check it.
//
// Why per stream: a block freed on stream A may still be read by kernels queued on A.
// Handing it to work on A is safe (stream order), handing it to stream B is not.
// Why pools: memory used inside a captured graph is rewritten by every replay, so it
// must stay out of eager code's hands while the graph lives (detail::bind_graph_pool).
#include <cuda_runtime_api.h>

#include <map>
#include <mutex>
#include <sstream>
#include <tuple>
#include <unordered_map>

#include "cuda.h"
#include "detail.h"

namespace weft::cuda {

namespace {

// Small requests round up to 512 bytes, large ones to 2 MiB: fewer distinct sizes means
// more reuse. A cached block serves a request of at least half its size, no smaller,
// so a huge block is not wasted on a tiny tensor.
constexpr size_t kSmall = 1 << 20;
size_t round_size(size_t n) {
  if (n == 0) n = 1;
  if (n < kSmall) return (n + 511) / 512 * 512;
  const size_t big = 2 << 20;
  return (n + big - 1) / big * big;
}

struct Block {
  size_t size;
  int device;
  cudaStream_t stream;
  int pool;  // 0: the ordinary cache; >0: a graph's private pool
};

using FreeKey = std::tuple<int, int, cudaStream_t>;  // (device, pool, stream)

class Allocator {
 public:
  void* allocate(size_t nbytes, int device) {
    const size_t size = round_size(nbytes);
    cudaStream_t stream = detail::stream(device);
    std::lock_guard<std::mutex> lock(mu_);
    const int pool = bound_pool(device, stream);
    if (void* p = take_cached(device, pool, stream, size)) return p;
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation) {  // give the cache back and try once more
      cudaGetLastError();
      release_cached(device);
      err = cudaMalloc(&p, size);
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      throw Error(weft::detail::str("cuda allocator: cudaMalloc of ", size, " bytes on cuda:", device, " failed: ",
                                    cudaGetErrorString(err), " (", summary_locked(device), ")"));
    }
    Stats& st = stats_[device];
    st.malloc_calls++;
    st.reserved += size;
    live_[p] = Block{size, device, stream, pool};
    note_allocated(device, size);
    return p;
  }

  void free(void* p) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) return;  // not ours (already released): nothing to do
    const Block b = it->second;
    live_.erase(it);
    stats_[b.device].allocated -= b.size;
    int pool = dead_pools_.count(b.pool) ? 0 : b.pool;
    // A block freed while its stream is being captured may have been used by captured
    // kernels: the graph adopts it, so eager code never reuses memory a replay touches.
    if (pool == 0) pool = bound_pool(b.device, b.stream);
    free_[{b.device, pool, b.stream}].emplace(b.size, p);
  }

  int create_pool() {
    std::lock_guard<std::mutex> lock(mu_);
    return next_pool_++;
  }

  void bind(int device, cudaStream_t stream, int pool) {
    std::lock_guard<std::mutex> lock(mu_);
    if (pool == 0) bindings_.erase({device, stream});
    else bindings_[{device, stream}] = pool;
  }

  // The graph is gone: its cached blocks join the ordinary cache, and its live ones will
  // when they are freed.
  void release_pool(int pool) {
    std::lock_guard<std::mutex> lock(mu_);
    dead_pools_[pool] = true;
    for (auto it = free_.begin(); it != free_.end();) {
      auto [device, p, stream] = it->first;
      if (p == pool) {
        auto& dst = free_[{device, 0, stream}];
        dst.insert(it->second.begin(), it->second.end());
        it = free_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    for (int d = 0; d < kMaxDevices; ++d) release_cached(d);
  }

  MemoryStats stats(int device) {
    std::lock_guard<std::mutex> lock(mu_);
    const Stats& s = stats_[device];
    return {s.allocated, s.reserved, s.peak, s.malloc_calls, s.free_calls, s.hits};
  }
  void reset_peak(int device) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_[device].peak = stats_[device].allocated;
  }
  std::string summary(int device) {
    std::lock_guard<std::mutex> lock(mu_);
    return summary_locked(device);
  }

  static constexpr int kMaxDevices = 16;

 private:
  struct Stats {
    size_t allocated = 0, reserved = 0, peak = 0;
    int64_t malloc_calls = 0, free_calls = 0, hits = 0;
  };

  int bound_pool(int device, cudaStream_t stream) const {
    auto it = bindings_.find({device, stream});
    return it == bindings_.end() ? 0 : it->second;
  }

  // Smallest cached block of at least `size` (and at most twice it) on this stream.
  void* take_cached(int device, int pool, cudaStream_t stream, size_t size) {
    auto fl = free_.find({device, pool, stream});
    if (fl == free_.end()) return nullptr;
    auto it = fl->second.lower_bound(size);
    if (it == fl->second.end() || it->first > 2 * size) return nullptr;
    void* p = it->second;
    const size_t got = it->first;
    fl->second.erase(it);
    live_[p] = Block{got, device, stream, pool};
    stats_[device].hits++;
    note_allocated(device, got);
    return p;
  }

  void note_allocated(int device, size_t size) {
    Stats& s = stats_[device];
    s.allocated += size;
    if (s.allocated > s.peak) s.peak = s.allocated;
  }

  // cudaFree every block of the ordinary cache on `device` (graph pools keep theirs).
  void release_cached(int device) {
    for (auto it = free_.begin(); it != free_.end();) {
      auto [d, pool, stream] = it->first;
      if (d != device || pool != 0) {
        ++it;
        continue;
      }
      for (auto& [size, p] : it->second) {
        cudaFree(p);
        stats_[d].reserved -= size;
        stats_[d].free_calls++;
      }
      it = free_.erase(it);
    }
  }

  std::string summary_locked(int device) const {
    const Stats& s = stats_[device];
    std::ostringstream os;
    auto mib = [](size_t b) { return static_cast<double>(b) / (1 << 20); };
    os.precision(1);
    os << std::fixed << "cuda:" << device << ": allocated " << mib(s.allocated) << " MiB, reserved "
       << mib(s.reserved) << " MiB, peak " << mib(s.peak) << " MiB, cudaMalloc calls " << s.malloc_calls
       << ", cache hits " << s.hits;
    return os.str();
  }

  std::mutex mu_;
  std::unordered_map<void*, Block> live_;
  std::map<FreeKey, std::multimap<size_t, void*>> free_;
  std::map<std::pair<int, cudaStream_t>, int> bindings_;
  std::map<int, bool> dead_pools_;
  int next_pool_ = 1;
  Stats stats_[kMaxDevices];
};

// Never destroyed: tensors freed during static destruction still find it.
Allocator& allocator() {
  static Allocator* a = new Allocator;
  return *a;
}

void check_device(int index, const char* op) {
  WEFT_CHECK(is_available(), op, ": no CUDA device is visible");
  WEFT_CHECK(index >= 0 && index < device_count() && index < Allocator::kMaxDevices, op, ": cuda:", index,
             " does not exist (", device_count(), " device(s) visible)");
}

}  // namespace

void* device_malloc(size_t nbytes, int index) {
  check_device(index, "cuda::device_malloc");
  DeviceGuard g(index);
  return allocator().allocate(nbytes, index);
}

void device_free(void* p, int) { allocator().free(p); }

MemoryStats memory_stats(int index) {
  check_device(index, "cuda::memory_stats");
  return allocator().stats(index);
}
void reset_peak_memory(int index) {
  check_device(index, "cuda::reset_peak_memory");
  allocator().reset_peak(index);
}
void empty_cache() { allocator().empty_cache(); }
std::string memory_summary(int index) {
  check_device(index, "cuda::memory_summary");
  return allocator().summary(index);
}

namespace detail {
int create_graph_pool() { return allocator().create_pool(); }
void bind_graph_pool(int device, cudaStream_t stream, int pool) { allocator().bind(device, stream, pool); }
void release_graph_pool(int pool) { allocator().release_pool(pool); }
}  // namespace detail

}  // namespace weft::cuda
