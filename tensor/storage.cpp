#include "storage.h"

#include <cstdint>
#include <cstdlib>
#include <new>

#include "backend.h"
#include "error.h"
#include "host_allocator.h"

namespace weft {

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  if (!device.is_cpu()) {
    DeviceBackend& b = backend(device);
    void* p = b.allocate(nbytes, device.index);
    return std::make_shared<Storage>(p, nbytes, device, [&b, idx = device.index](void* q) { b.deallocate(q, idx); });
  }
  return std::make_shared<Storage>(host_allocate(nbytes), nbytes, device,
                                   [nbytes](void* q) { host_deallocate(q, nbytes); });
}

std::shared_ptr<Storage> Storage::from_blob(void* data, size_t nbytes, Device device,
                                            std::function<void(void*)> deleter) {
  return std::make_shared<Storage>(data, nbytes, device, std::move(deleter));
}

Storage::~Storage() {
  if (deleter_) deleter_(data_);
}

}  // namespace weft
