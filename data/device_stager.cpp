#include "device_stager.h"

#include <cstring>

#include "../cuda/cuda.h"
#include "../tensor/creation.h"
#include "../tensor/raw.h"

namespace weft::data {

struct DeviceStager::Slot {
  void* pinned = nullptr;  // page-locked staging buffer
  size_t capacity = 0;
  Tensor on_device;
  std::unique_ptr<cuda::Event> copied;  // the last copy out of `pinned` has finished
  ~Slot() {
    if (copied) copied->synchronize();
    if (pinned) cuda::pinned_free(pinned);
  }
};

DeviceStager::DeviceStager(Device device) : device_(device) {}
DeviceStager::~DeviceStager() = default;

Tensor DeviceStager::stage(const Tensor& host_in, int slot) {
  if (!device_.is_cuda()) return raw::to_device(host_in, device_);
  WEFT_CHECK(host_in.device().is_cpu(), "DeviceStager::stage: expected a CPU tensor, got one on ", host_in.device());
  WEFT_CHECK(slot >= 0, "DeviceStager::stage: slot must be >= 0, got ", slot);
  if (static_cast<size_t>(slot) >= slots_.size()) slots_.resize(slot + 1);
  if (!slots_[slot]) slots_[slot] = std::make_unique<Slot>();
  Slot& s = *slots_[slot];
  const Tensor host = raw::contiguous(host_in);
  const size_t nbytes = static_cast<size_t>(host.numel() * element_size(host.dtype()));

  // The previous copy must have left the staging buffer before we overwrite it (it
  // normally finished long ago: this rarely waits).
  if (s.copied) s.copied->synchronize();
  if (nbytes > s.capacity) {
    if (s.pinned) cuda::pinned_free(s.pinned);
    s.pinned = cuda::pinned_malloc(nbytes);
    s.capacity = nbytes;
  }
  if (!s.on_device.defined() || s.on_device.shape() != host.shape() || s.on_device.dtype() != host.dtype())
    s.on_device = empty(host.shape(), host.dtype(), device_);
  std::memcpy(s.pinned, host.raw_data(), nbytes);
  cuda::memcpy_async(s.on_device.raw_data(), device_, s.pinned, kCPU, nbytes);
  if (!s.copied) s.copied = std::make_unique<cuda::Event>();
  s.copied->record(cuda::current_stream(device_.index));
  s.on_device.storage()->bump_version();
  return s.on_device;
}

}  // namespace weft::data
