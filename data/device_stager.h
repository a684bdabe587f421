// DeviceStager: moves the DataLoader's batches to a GPU without stalling the host.
//
// Tensor::to(cuda) from ordinary (pageable) host memory has to wait for the copy, and
// so for everything queued before it: the host can no longer run ahead of the GPU. The
// stager copies each batch into a page-locked (pinned) staging buffer and starts an
// asynchronous copy from there into a device tensor on the current stream, which the
// step's kernels -- queued after it on the same stream -- then read.
//
// The device tensor of each slot is reused while the batch shape stays the same, so a
// step captured in a CUDA graph reads every new batch from the same address.
// On a CPU device, stage() just returns the batch tensor.
#pragma once

#include <memory>
#include <vector>

#include "../tensor/tensor.h"

namespace weft::data {

class DeviceStager {
 public:
  explicit DeviceStager(Device device);
  ~DeviceStager();
  DeviceStager(const DeviceStager&) = delete;
  DeviceStager& operator=(const DeviceStager&) = delete;

  // Copies `host` (a contiguous CPU tensor) into slot `slot`'s device tensor and returns
  // that tensor. The copy is ordered before any kernel launched afterwards.
  Tensor stage(const Tensor& host, int slot);
  Device device() const { return device_; }

 private:
  struct Slot;
  Device device_;
  std::vector<std::unique_ptr<Slot>> slots_;
};

}  // namespace weft::data
