// The CUDA entry points of a build configured with -Dcuda=disabled (or with no CUDA
// found): queries answer "no GPU", everything else throws a clear error.
#include "../tensor/error.h"
#include "cuda.h"

namespace weft::cuda {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  throw Error(detail::str(what, ": weft was built without CUDA; reconfigure with -Dcuda=enabled on a machine "
                                "with the CUDA toolkit"));
}
}  // namespace

bool built_with_cuda() { return false; }
bool is_available() { return false; }
int device_count() { return 0; }
std::string device_name(int) { no_cuda("cuda::device_name"); }
void synchronize(int) { no_cuda("cuda::synchronize"); }
void* device_malloc(size_t, int) { no_cuda("cuda::device_malloc"); }
void device_free(void*, int) {}
void memcpy(void*, Device, const void*, Device, size_t) { no_cuda("cuda::memcpy"); }

}  // namespace weft::cuda
