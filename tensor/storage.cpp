#include "storage.h"

#include <cstdint>
#include <cstdlib>
#include <new>

#include "backend.h"
#include "error.h"
#include "host_allocator.h"
#include "memory.h"

namespace weft {

// Every allocation is counted per device (memory.h), logical CPU devices included:
// counted first (which also checks the device index), uncounted if allocating fails.
std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  const auto n = static_cast<int64_t>(nbytes);
  detail::count_allocation(device, n);
  try {
    if (!device.is_cpu()) {
      DeviceBackend& b = backend(device);
      void* p = b.allocate(nbytes, device.index);
      return std::make_shared<Storage>(p, nbytes, device, [&b, device, n](void* q) {
        b.deallocate(q, device.index);
        detail::count_free(device, n);
      });
    }
    return std::make_shared<Storage>(host_allocate(nbytes), nbytes, device, [nbytes, device, n](void* q) {
      host_deallocate(q, nbytes);
      detail::count_free(device, n);
    });
  } catch (...) {
    detail::count_free(device, n);
    throw;
  }
}

std::shared_ptr<Storage> Storage::from_blob(void* data, size_t nbytes, Device device,
                                            std::function<void(void*)> deleter) {
  return std::make_shared<Storage>(data, nbytes, device, std::move(deleter));
}

Storage::~Storage() {
  if (deleter_) deleter_(data_);
}

}  // namespace weft
