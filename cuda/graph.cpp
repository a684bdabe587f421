// CUDA graphs: capture the kernels of a whole training step once, replay them with one
// launch. On small models the GPU finishes each kernel faster than the host can launch
// the next; a graph removes the per-kernel launch cost (and weft's own per-op host work).
#include <cuda_runtime_api.h>

#include "cuda.h"
#include "detail.h"

namespace weft::cuda {

struct Graph::Impl {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  int device = -1;
  cudaStream_t stream = nullptr;
  int pool = 0;
  size_t nodes = 0;
};

Graph::Graph() : impl_(std::make_unique<Impl>()) {}

Graph::~Graph() {
  if (impl_->exec) cudaGraphExecDestroy(impl_->exec);
  if (impl_->graph) cudaGraphDestroy(impl_->graph);
  if (impl_->pool) detail::release_graph_pool(impl_->pool);
}

void Graph::capture_begin(int device) {
  WEFT_CHECK(!impl_->graph && impl_->device < 0, "cuda::Graph::capture_begin: this graph was already captured");
  DeviceGuard g(device);
  impl_->device = device;
  impl_->stream = detail::stream(device);
  impl_->pool = detail::create_graph_pool();
  // Let the work queued so far finish, so it is not part of the graph's dependencies.
  WEFT_CUDA_CHECK("cuda::Graph::capture_begin", cudaStreamSynchronize(impl_->stream));
  detail::bind_graph_pool(device, impl_->stream, impl_->pool);
  // Relaxed: the allocator may still call cudaMalloc (for the graph's pool) meanwhile.
  WEFT_CUDA_CHECK("cuda::Graph::capture_begin", cudaStreamBeginCapture(impl_->stream, cudaStreamCaptureModeRelaxed));
}

void Graph::capture_end() {
  WEFT_CHECK(impl_->device >= 0 && !impl_->graph, "cuda::Graph::capture_end: capture_begin was not called");
  DeviceGuard g(impl_->device);
  const cudaError_t err = cudaStreamEndCapture(impl_->stream, &impl_->graph);
  detail::bind_graph_pool(impl_->device, impl_->stream, 0);
  WEFT_CHECK(err == cudaSuccess, "cuda::Graph::capture_end: cudaStreamEndCapture: ", cudaGetErrorString(err),
             " (the captured code synchronised with the host or used another stream)");
  cudaGetLastError();
  WEFT_CUDA_CHECK("cuda::Graph::capture_end", cudaGraphGetNodes(impl_->graph, nullptr, &impl_->nodes));
  WEFT_CUDA_CHECK("cuda::Graph::capture_end", cudaGraphInstantiate(&impl_->exec, impl_->graph, 0));
}

void Graph::replay() {
  WEFT_CHECK(impl_->exec, "cuda::Graph::replay: nothing was captured");
  DeviceGuard g(impl_->device);
  WEFT_CUDA_CHECK("cuda::Graph::replay", cudaGraphLaunch(impl_->exec, detail::stream(impl_->device)));
}

bool Graph::captured() const { return impl_->exec != nullptr; }
size_t Graph::num_nodes() const { return impl_->nodes; }

}  // namespace weft::cuda
