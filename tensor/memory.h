// Bytes in live tensors, per device, counted where Storage allocates them.
//
// Every device kind is counted, logical CPU devices (cpu:0, cpu:1, ...) included, so a
// model sharded across cpu:0 and cpu:1 shows what each stage holds -- measured, not
// estimated. The count is of bytes tensors asked for (a caching allocator underneath may
// hold more: cuda::memory_stats says how much on a GPU). Memory wrapped with
// Storage::from_blob is not counted: weft did not allocate it.
//
//   weft::reset_device_peak(Device::cpu(1));
//   ... a training step ...
//   weft::device_memory(Device::cpu(1)).peak   // the step's high-water mark on cpu:1
#pragma once

#include <cstdint>
#include <string>

#include "device.h"

namespace weft {

struct DeviceMemory {
  int64_t allocated = 0;    // bytes in live storages on the device now
  int64_t peak = 0;         // the most `allocated` has been since the last reset
  int64_t allocations = 0;  // storages allocated so far (never reset)
};

DeviceMemory device_memory(Device d);
// Starts a new high-water mark: peak = allocated now.
void reset_device_peak(Device d);

// "0 B", "512 B", "12.3 KiB", "4.0 MiB", "1.50 GiB"
std::string format_bytes(int64_t bytes);

namespace detail {
// Storage::allocate and its deleter keep the count.
void count_allocation(Device d, int64_t nbytes);
void count_free(Device d, int64_t nbytes);
}  // namespace detail

}  // namespace weft
