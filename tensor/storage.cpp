#include "storage.h"

#include <cstdint>
#include <cstdlib>
#include <new>

#include "../cuda/cuda.h"
#include "error.h"

namespace weft {

namespace {
constexpr size_t kAlignment = 64;  // a cache line, and enough for any SIMD load

// Plain malloc, aligned by hand: glibc's aligned_alloc bypasses its per-thread cache and
// fragments the heap, which made small tensors (the autograd hot path) twice as slow.
// Returns the aligned pointer; *base receives what free() needs.
void* host_alloc(size_t nbytes, void** base) {
  *base = std::malloc(nbytes + kAlignment);
  if (!*base) throw Error(detail::str("storage: out of host memory allocating ", nbytes, " bytes"));
  const auto addr = reinterpret_cast<uintptr_t>(*base);
  return reinterpret_cast<void*>((addr + kAlignment) & ~(uintptr_t{kAlignment} - 1));
}
}  // namespace

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  if (device.is_cuda()) {
    void* p = cuda::device_malloc(nbytes, device.index);
    return std::make_shared<Storage>(p, nbytes, device, [idx = device.index](void* q) { cuda::device_free(q, idx); });
  }
  void* base = nullptr;
  void* data = host_alloc(nbytes, &base);
  return std::make_shared<Storage>(data, nbytes, device, [base](void*) { std::free(base); });
}

std::shared_ptr<Storage> Storage::from_blob(void* data, size_t nbytes, Device device,
                                            std::function<void(void*)> deleter) {
  return std::make_shared<Storage>(data, nbytes, device, std::move(deleter));
}

Storage::~Storage() {
  if (deleter_) deleter_(data_);
}

}  // namespace weft
