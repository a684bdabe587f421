#include "storage.h"

#include <cstdlib>
#include <new>

#include "../cuda/cuda.h"
#include "error.h"

namespace weft {

namespace {
constexpr size_t kAlignment = 64;  // a cache line, and enough for any SIMD load

void* host_alloc(size_t nbytes) {
  // aligned_alloc wants a size that is a multiple of the alignment.
  const size_t padded = (std::max<size_t>(nbytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, padded);
  if (!p) throw Error(detail::str("storage: out of host memory allocating ", nbytes, " bytes"));
  return p;
}
}  // namespace

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  if (device.is_cuda()) {
    void* p = cuda::device_malloc(nbytes, device.index);
    return std::make_shared<Storage>(p, nbytes, device, [idx = device.index](void* q) { cuda::device_free(q, idx); });
  }
  return std::make_shared<Storage>(host_alloc(nbytes), nbytes, device, [](void* q) { std::free(q); });
}

std::shared_ptr<Storage> Storage::from_blob(void* data, size_t nbytes, Device device,
                                            std::function<void(void*)> deleter) {
  return std::make_shared<Storage>(data, nbytes, device, std::move(deleter));
}

Storage::~Storage() {
  if (deleter_) deleter_(data_);
}

}  // namespace weft
