// The public CUDA runtime API (cuda.h) of a build configured with -Dcuda=disabled (or
// with no CUDA found): queries answer "no GPU", everything else throws a clear error.
// User code names these directly (cuda::is_available(), streams, graphs), so they must
// link in every build. The compute kernels need no such stand-in: without CUDA no
// backend is registered for cuda devices (tensor/backend.h), and an op on one fails
// there: builtin_backend() below says there is none.
#include "../tensor/backend.h"
#include "../tensor/error.h"
#include "cuda.h"

namespace weft::cuda {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  throw Error(detail::str(what, ": weft was built without CUDA; reconfigure with -Dcuda=enabled on a machine "
                                "with the CUDA toolkit"));
}
}  // namespace

DeviceBackend* builtin_backend() { return nullptr; }  // tensor/backend.cpp: "built without CUDA"
bool built_with_cuda() { return false; }
bool built_with_cudnn() { return false; }
bool use_cudnn() { return false; }
void set_use_cudnn(bool) { no_cuda("cuda::set_use_cudnn"); }
bool is_available() { return false; }
int device_count() { return 0; }
std::string device_name(int) { no_cuda("cuda::device_name"); }
std::string blas_library() { no_cuda("cuda::blas_library"); }
std::string sparse_library() { no_cuda("cuda::sparse_library"); }
DeviceProperties properties(int) { no_cuda("cuda::properties"); }
int current_device() { no_cuda("cuda::current_device"); }
void set_device(int) { no_cuda("cuda::set_device"); }
DeviceGuard::DeviceGuard(int) : previous_(0) { no_cuda("cuda::DeviceGuard"); }
DeviceGuard::~DeviceGuard() = default;
void synchronize(int) { no_cuda("cuda::synchronize"); }

Stream Stream::create(int) { no_cuda("cuda::Stream::create"); }
void Stream::synchronize() const { no_cuda("cuda::Stream::synchronize"); }
Stream current_stream(int) { no_cuda("cuda::current_stream"); }
Stream set_current_stream(const Stream&) { no_cuda("cuda::set_current_stream"); }

Event::Event(bool) { no_cuda("cuda::Event"); }
Event::~Event() = default;
void Event::record(const Stream&) { no_cuda("cuda::Event::record"); }
void Event::wait(const Stream&) const { no_cuda("cuda::Event::wait"); }
void Event::synchronize() const { no_cuda("cuda::Event::synchronize"); }
bool Event::query() const { no_cuda("cuda::Event::query"); }
float Event::elapsed_ms(const Event&) const { no_cuda("cuda::Event::elapsed_ms"); }

void* device_malloc(size_t, int) { no_cuda("cuda::device_malloc"); }
void device_free(void*, int) {}
MemoryStats memory_stats(int) { no_cuda("cuda::memory_stats"); }
void reset_peak_memory(int) { no_cuda("cuda::reset_peak_memory"); }
void empty_cache() {}
std::string memory_summary(int) { no_cuda("cuda::memory_summary"); }
void* pinned_malloc(size_t) { no_cuda("cuda::pinned_malloc"); }
void pinned_free(void*) {}
void memcpy(void*, Device, const void*, Device, size_t) { no_cuda("cuda::memcpy"); }
void memcpy_async(void*, Device, const void*, Device, size_t) { no_cuda("cuda::memcpy_async"); }
void set_allow_tf32(bool) {}
bool allow_tf32() { return false; }

struct Graph::Impl {};
Graph::Graph() = default;
Graph::~Graph() = default;
void Graph::capture_begin(int) { no_cuda("cuda::Graph::capture_begin"); }
void Graph::capture_end() { no_cuda("cuda::Graph::capture_end"); }
void Graph::replay() { no_cuda("cuda::Graph::replay"); }
bool Graph::captured() const { return false; }
size_t Graph::num_nodes() const { return 0; }

}  // namespace weft::cuda
