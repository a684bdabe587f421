// The CUDA entry points of a build with CUDA: thin checked wrappers over cudart.
#include <cuda_runtime_api.h>

#include "../tensor/error.h"
#include "cuda.h"

namespace weft::cuda {

namespace {
void check(cudaError_t err, const char* call) {
  if (err != cudaSuccess) throw Error(detail::str(call, ": ", cudaGetErrorString(err)));
}
}  // namespace

bool built_with_cuda() { return true; }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

bool is_available() { return device_count() > 0; }

std::string device_name(int index) {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties");
  return prop.name;
}

void synchronize(int index) {
  check(cudaSetDevice(index), "cudaSetDevice");
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

void* device_malloc(size_t nbytes, int index) {
  WEFT_CHECK(is_available(), "cuda::device_malloc: no CUDA device is visible");
  check(cudaSetDevice(index), "cudaSetDevice");
  void* p = nullptr;
  check(cudaMalloc(&p, std::max<size_t>(nbytes, 1)), "cudaMalloc");
  return p;
}

void device_free(void* p, int index) {
  cudaSetDevice(index);
  cudaFree(p);  // errors here cannot be reported from a destructor
}

void memcpy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  const cudaMemcpyKind kind = dst_device.is_cuda() ? (src_device.is_cuda() ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                                   : cudaMemcpyDeviceToHost;
  check(cudaMemcpy(dst, src, nbytes, kind), "cudaMemcpy");
}

}  // namespace weft::cuda
