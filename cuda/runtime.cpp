// Devices, streams, events, copies and math settings of a build with CUDA: thin checked
// wrappers over cudart. Memory lives in allocator.cpp, graphs in graph.cpp.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "cuda.h"
#include "detail.h"

namespace weft::cuda {

namespace detail {
void fail(const char* op, const char* call, const char* message) {
  const std::string c(call);
  const std::string name = c.substr(0, c.find('('));
  throw Error(weft::detail::str(op, ": ", name, ": ", message));
}
}  // namespace detail

using detail::check;

bool built_with_cuda() { return true; }

int device_count() {
  static const int n = [] {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no device" error
      return 0;
    }
    return count;
  }();
  return n;
}

bool is_available() { return device_count() > 0; }

namespace {
void check_index(int index, const char* op) {
  WEFT_CHECK(is_available(), op, ": no CUDA device is visible");
  WEFT_CHECK(index >= 0 && index < device_count(), op, ": cuda:", index, " does not exist (", device_count(),
             " device(s) visible)");
}
}  // namespace

DeviceProperties properties(int index) {
  check_index(index, "cuda::properties");
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, index), "cuda::properties", "cudaGetDeviceProperties");
  return {p.name, p.major, p.minor, p.multiProcessorCount, p.totalGlobalMem, static_cast<size_t>(p.l2CacheSize)};
}

std::string device_name(int index) { return properties(index).name; }

int current_device() {
  int d = 0;
  check(cudaGetDevice(&d), "cuda::current_device", "cudaGetDevice");
  return d;
}

void set_device(int index) {
  check_index(index, "cuda::set_device");
  check(cudaSetDevice(index), "cuda::set_device", "cudaSetDevice");
}

DeviceGuard::DeviceGuard(int index) : previous_(current_device()) {
  if (index != previous_) set_device(index);
}
DeviceGuard::~DeviceGuard() { cudaSetDevice(previous_); }

void synchronize(int index) {
  DeviceGuard g(index);
  check(cudaDeviceSynchronize(), "cuda::synchronize", "cudaDeviceSynchronize");
}

// ---- streams ------------------------------------------------------------------------------

Stream Stream::create(int device) {
  DeviceGuard g(device);
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cuda::Stream::create", "cudaStreamCreateWithFlags");
  return Stream(s, device);
}

void Stream::synchronize() const {
  check(cudaStreamSynchronize(static_cast<cudaStream_t>(handle_)), "cuda::Stream::synchronize",
        "cudaStreamSynchronize");
}

namespace {
constexpr int kMaxDevices = 16;

// One weft-made default stream per device, shared by every thread (created on first use,
// never destroyed: kernels may still be queued on it at exit).
cudaStream_t default_stream(int device) {
  static std::once_flag once[kMaxDevices];
  static cudaStream_t streams[kMaxDevices];
  WEFT_CHECK(device >= 0 && device < kMaxDevices, "cuda: device index ", device, " out of range");
  std::call_once(once[device], [device] { streams[device] = static_cast<cudaStream_t>(Stream::create(device).handle()); });
  return streams[device];
}

// The calling thread's current stream per device; null means "the default stream".
thread_local cudaStream_t tls_streams[kMaxDevices] = {};
}  // namespace

Stream current_stream(int device) { return Stream(detail::stream(device), device); }

Stream set_current_stream(const Stream& s) {
  Stream old = current_stream(s.device());
  tls_streams[s.device()] = static_cast<cudaStream_t>(s.handle());
  return old;
}

namespace detail {
cudaStream_t stream(int device) {
  cudaStream_t s = tls_streams[device];
  return s ? s : default_stream(device);
}
cudaStream_t stream() { return stream(current_device()); }

bool capturing() {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(stream(), &status), "cuda", "cudaStreamIsCapturing");
  return status == cudaStreamCaptureStatusActive;
}
}  // namespace detail

// ---- events ---------------------------------------------------------------------------------

Event::Event(bool timing) {
  cudaEvent_t e = nullptr;
  check(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming), "cuda::Event",
        "cudaEventCreateWithFlags");
  handle_ = e;
}
Event::~Event() { cudaEventDestroy(static_cast<cudaEvent_t>(handle_)); }

void Event::record(const Stream& s) {
  check(cudaEventRecord(static_cast<cudaEvent_t>(handle_), static_cast<cudaStream_t>(s.handle())),
        "cuda::Event::record", "cudaEventRecord");
}
void Event::wait(const Stream& s) const {
  check(cudaStreamWaitEvent(static_cast<cudaStream_t>(s.handle()), static_cast<cudaEvent_t>(handle_), 0),
        "cuda::Event::wait", "cudaStreamWaitEvent");
}
void Event::synchronize() const {
  check(cudaEventSynchronize(static_cast<cudaEvent_t>(handle_)), "cuda::Event::synchronize", "cudaEventSynchronize");
}
bool Event::query() const {
  const cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(handle_));
  if (e == cudaErrorNotReady) {
    cudaGetLastError();
    return false;
  }
  check(e, "cuda::Event::query", "cudaEventQuery");
  return true;
}
float Event::elapsed_ms(const Event& end) const {
  float ms = 0;
  check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(handle_), static_cast<cudaEvent_t>(end.handle_)),
        "cuda::Event::elapsed_ms", "cudaEventElapsedTime");
  return ms;
}

// ---- copies ---------------------------------------------------------------------------------

namespace {
cudaMemcpyKind kind_of(Device dst, Device src) {
  if (dst.is_cuda()) return src.is_cuda() ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice;
  return src.is_cuda() ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost;
}
int gpu_of(Device dst, Device src) { return dst.is_cuda() ? dst.index : src.index; }
}  // namespace

void memcpy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  const int dev = gpu_of(dst_device, src_device);
  DeviceGuard g(dev);
  cudaStream_t s = detail::stream(dev);
  WEFT_CHECK((dst_device.is_cuda() && src_device.is_cuda()) || !detail::capturing(),
             "copy: a copy between host and GPU waits for the GPU, which is impossible while the stream is being "
             "captured into a CUDA graph (read values back after capture_end)");
  check(cudaMemcpyAsync(dst, src, nbytes, kind_of(dst_device, src_device), s), "copy", "cudaMemcpyAsync");
  // A host buffer may be freed or read as soon as we return: wait for the copy.
  if (!dst_device.is_cuda() || !src_device.is_cuda()) check(cudaStreamSynchronize(s), "copy", "cudaStreamSynchronize");
}

void memcpy_async(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  const int dev = gpu_of(dst_device, src_device);
  DeviceGuard g(dev);
  check(cudaMemcpyAsync(dst, src, nbytes, kind_of(dst_device, src_device), detail::stream(dev)), "copy_async",
        "cudaMemcpyAsync");
}

void* pinned_malloc(size_t nbytes) {
  void* p = nullptr;
  check(cudaMallocHost(&p, std::max<size_t>(nbytes, 1)), "cuda::pinned_malloc", "cudaMallocHost");
  return p;
}
void pinned_free(void* p) { cudaFreeHost(p); }

// ---- math settings ---------------------------------------------------------------------------

namespace {
std::atomic<bool> g_tf32{false};
}
void set_allow_tf32(bool on) { g_tf32 = on; }
bool allow_tf32() { return g_tf32; }

}  // namespace weft::cuda
