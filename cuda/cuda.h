// The CUDA runtime as weft sees it: devices, streams, events, memory, copies, graphs.
//
// This header compiles with a plain C++ compiler (no CUDA headers leak out). Two
// implementations exist: the files built when Meson finds CUDA (runtime.cpp,
// allocator.cpp, graph.cpp, ...), and disabled.cpp, where every entry point that needs a
// GPU throws "weft was built without CUDA" -- so code written for GPUs fails clearly.
//
// Every failed CUDA, cuBLAS or cuDNN call becomes a weft::Error naming the call and the
// weft op that made it ("conv2d: cudnnConvolutionForward: CUDNN_STATUS_BAD_PARAM").
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "../tensor/device.h"

namespace weft::cuda {

// ---- devices --------------------------------------------------------------------------
// True when weft was built with CUDA (says nothing about a GPU being present).
bool built_with_cuda();
// True when built with CUDA and at least one GPU is visible. Never throws.
bool is_available();
int device_count();  // 0 when unavailable; never throws
std::string device_name(int index);
// The cuBLAS library weft's GPU GEMMs use, e.g. "libcublas.so.13 (cuBLAS 13.0.0)". It is
// opened on first use, not at program start (cuda/cuda_libraries.h says why); this opens
// it, so it also checks that it can be found. Needs no GPU; throws when it is missing.
std::string blas_library();
// The same for cuSPARSE (prune::SparseLinear's GPU path): "libcusparse.so.12 (cuSPARSE ...)".
std::string sparse_library();

struct DeviceProperties {
  std::string name;
  int major = 0, minor = 0;       // compute capability
  int multiprocessors = 0;
  size_t total_memory = 0;        // bytes
  size_t l2_cache = 0;            // bytes
};
DeviceProperties properties(int index);

int current_device();
void set_device(int index);

// Makes `index` the current device for its lifetime, then restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_;
};

// Waits for all work on the device.
void synchronize(int index = 0);

// ---- streams and events ------------------------------------------------------------------
// A stream is an ordered queue of GPU work. Every weft kernel launches on the calling
// thread's current stream of its device: by default one non-blocking stream per device
// that weft creates (not the legacy default stream, which CUDA graphs cannot capture).
class Stream {
 public:
  static Stream create(int device);  // a new non-blocking stream
  void* handle() const { return handle_; }  // a cudaStream_t
  int device() const { return device_; }
  void synchronize() const;
  bool operator==(const Stream& o) const { return handle_ == o.handle_; }

  Stream(void* handle, int device) : handle_(handle), device_(device) {}

 private:
  void* handle_;
  int device_;
};
Stream current_stream(int device);
// Sets the calling thread's current stream for stream.device() (and returns the old one).
Stream set_current_stream(const Stream& s);

// Makes `s` current for its lifetime.
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& s) : previous_(set_current_stream(s)) {}
  ~StreamGuard() { set_current_stream(previous_); }
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  Stream previous_;
};

// A marker in a stream: record it, wait for it from another stream or the host, time it.
class Event {
 public:
  explicit Event(bool timing = false);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(const Stream& s);
  void wait(const Stream& s) const;  // s waits for this event (no host block)
  void synchronize() const;
  bool query() const;                // true once the recorded work finished
  float elapsed_ms(const Event& end) const;

 private:
  void* handle_ = nullptr;  // cudaEvent_t
};

// ---- memory ----------------------------------------------------------------------------------
// Device memory comes from a caching allocator (allocator.cpp): freed blocks go back on a
// per-stream free list binned by size and are handed out again, so a training step that
// repeats the same shapes calls cudaMalloc zero times once it has warmed up.
void* device_malloc(size_t nbytes, int index);
void device_free(void* p, int index);

struct MemoryStats {
  size_t allocated = 0;       // bytes in live tensors (rounded block sizes)
  size_t reserved = 0;        // bytes held from cudaMalloc, live or cached
  size_t peak_allocated = 0;  // high-water mark of `allocated` since the last reset
  int64_t malloc_calls = 0;   // cudaMalloc calls made by the allocator so far
  int64_t free_calls = 0;     // cudaFree calls (empty_cache)
  int64_t cache_hits = 0;     // allocations served from a free list
};
MemoryStats memory_stats(int index = 0);
void reset_peak_memory(int index = 0);
// Returns every cached (unused) block to CUDA. Blocks that graphs hold are kept.
void empty_cache();
// "cuda:0: allocated 12.3 MiB, reserved 64.0 MiB, peak 20.1 MiB, cudaMalloc calls 17, hits 4521"
std::string memory_summary(int index = 0);

// Page-locked host memory (for fast, asynchronous host-to-device copies).
void* pinned_malloc(size_t nbytes);
void pinned_free(void* p);

// Copies nbytes between host and device memory in either direction, on the current
// stream of the device side; returns after the copy finished (device to host) or was
// queued (host to device from pinned memory: the caller keeps the source alive until
// the stream passes it -- use synchronous copies from pageable memory otherwise).
void memcpy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);
void memcpy_async(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

// ---- math settings ---------------------------------------------------------------------------
// TF32 tensor-core math for float32 GEMMs and convolutions: faster, ~10 mantissa bits.
// Off by default so GPU results match the CPU to float32 rounding.
void set_allow_tf32(bool on);
bool allow_tf32();

// Convolutions through cuDNN when compiled in (the default), or through im2col + cuBLAS
// when set_use_cudnn(false) asks; the tests compare both.
void set_use_cudnn(bool on);
bool use_cudnn();
bool built_with_cudnn();

// ---- CUDA graphs -----------------------------------------------------------------------------
// Records everything launched on the current stream between capture_begin() and
// capture_end() -- kernels, cuBLAS and cuDNN calls, copies -- and replays it with one
// launch. The work must be static: same shapes, same pointers. Memory allocated during
// capture comes from a pool private to the graph, so replays write the same blocks and
// eager work never reuses them while the graph lives.
class Graph {
 public:
  Graph();
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  void capture_begin(int device = 0);
  void capture_end();
  void replay();
  bool captured() const;
  size_t num_nodes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::cuda
