// Storage: a block of bytes on one Device, shared by every tensor that views it.
//
// The version counter lives here, not on the tensor, because views share it: writing in
// place through any view bumps it, and the autograd tape compares it with the version it
// saved to catch "you modified a tensor I need for backward".
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "device.h"

namespace weft {

class Storage {
 public:
  // Allocates nbytes (64-byte aligned on the host) on `device`. Contents are uninitialised.
  static std::shared_ptr<Storage> allocate(size_t nbytes, Device device);
  // Wraps memory someone else owns; `deleter` (may be empty) runs when the storage dies.
  static std::shared_ptr<Storage> from_blob(void* data, size_t nbytes, Device device,
                                            std::function<void(void*)> deleter);

  Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> deleter)
      : data_(data), nbytes_(nbytes), device_(device), deleter_(std::move(deleter)) {}
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_;
  size_t nbytes_;
  Device device_;
  std::function<void(void*)> deleter_;
  std::atomic<uint64_t> version_{0};
};

}  // namespace weft
