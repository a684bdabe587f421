// A caching allocator for large host buffers.
//
// A training step allocates the same large activations and gradients every time. Fresh
// large blocks come from the kernel (mmap) and every page is faulted in and zeroed on
// first touch; returned, they go back to the kernel. That cost a CNN step a fifth of its
// time. So blocks of 64 KiB and more are kept on free lists keyed by size and handed out
// again: after the first step, a steady-state step asks the OS for nothing.
// Small blocks go straight to malloc, which already caches them well.
#pragma once

#include <cstddef>
#include <cstdint>

namespace weft {

void* host_allocate(size_t nbytes);          // 64-byte aligned
void host_deallocate(void* p, size_t nbytes);  // nbytes as passed to host_allocate

struct HostAllocatorStats {
  int64_t cached_bytes = 0;  // held on free lists, ready for reuse
  int64_t hits = 0;          // large requests served from the cache
  int64_t misses = 0;        // large requests that went to the system
};
HostAllocatorStats host_allocator_stats();
// Returns every cached block to the system.
void host_empty_cache();
// The most bytes the cache keeps (default 1 GiB, or WEFT_HOST_CACHE_MB).
void set_host_cache_limit(int64_t bytes);

}  // namespace weft
