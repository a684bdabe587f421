// The CUDA runtime as weft sees it: device count, memory, copies, synchronisation.
//
// This header compiles with a plain C++ compiler (no CUDA headers leak out). Two
// implementations exist: runtime.cpp, linked against cudart when Meson finds CUDA, and
// disabled.cpp, where every entry point that needs a GPU throws
// "weft was built without CUDA" -- so code written for GPUs fails clearly, not strangely.
#pragma once

#include <cstddef>
#include <string>

#include "../tensor/device.h"

namespace weft::cuda {

// True when weft was built with CUDA (says nothing about a GPU being present).
bool built_with_cuda();
// True when built with CUDA and at least one GPU is visible. Never throws.
bool is_available();
int device_count();  // 0 when unavailable; never throws
std::string device_name(int index);
void synchronize(int index = 0);

void* device_malloc(size_t nbytes, int index);
void device_free(void* p, int index);
// Copies nbytes between host and device memory in either direction.
void memcpy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

}  // namespace weft::cuda
