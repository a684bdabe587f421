// Fused optimizer updates over all parameters at once ("multi-tensor apply").
//
// A model has a handful of parameter tensors; updating each with its own launch costs
// more in launches than in math on small models. Here one launch covers up to
// kMaxTensors tensors: blockIdx.y picks the tensor, blockIdx.x strides over its elements.
// The learning rate and Adam's step count are read from device memory so that a CUDA
// graph replay sees their current values (see ops.h).
#include <cmath>

#include "../detail.h"
#include "../ops.h"

namespace weft::cuda {

namespace {

constexpr int kMaxTensors = 24;

template <int K>
struct TensorTable {
  float* p[K][kMaxTensors];  // K pointer lists: param, grad, state buffers
  int64_t n[kMaxTensors];
};

__global__ void sgd_kernel(TensorTable<3> t, const float* __restrict__ lr_ptr, SgdArgs a) {
  const int k = blockIdx.y;
  float* __restrict__ w = t.p[0][k];
  const float* __restrict__ g = t.p[1][k];
  float* __restrict__ b = t.p[2][k];
  const float lr = *lr_ptr, damp = 1 - a.dampening;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < t.n[k]; i += int64_t(gridDim.x) * blockDim.x) {
    float d = g[i] + a.weight_decay * w[i];
    if (b) {
      const float bi = a.first ? d : a.momentum * b[i] + damp * d;
      b[i] = bi;
      d = a.nesterov ? d + a.momentum * bi : bi;
    }
    w[i] -= lr * d;
  }
}

__global__ void adam_kernel(TensorTable<4> t, const float* __restrict__ lr_ptr, const float* __restrict__ step_ptr,
                            AdamArgs a) {
  const int k = blockIdx.y;
  float* __restrict__ w = t.p[0][k];
  const float* __restrict__ g = t.p[1][k];
  float* __restrict__ m = t.p[2][k];
  float* __restrict__ v = t.p[3][k];
  const float lr = *lr_ptr, step = *step_ptr;
  const float bc1 = 1 - powf(a.beta1, step), bc2 = 1 - powf(a.beta2, step);
  const float rate = lr / bc1, inv_sqrt_bc2 = rsqrtf(bc2);
  const float decay = a.decoupled ? 1 - lr * a.weight_decay : 1, l2 = a.decoupled ? 0 : a.weight_decay;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < t.n[k]; i += int64_t(gridDim.x) * blockDim.x) {
    const float d = g[i] + l2 * w[i];
    const float mi = a.beta1 * m[i] + (1 - a.beta1) * d;
    const float vi = a.beta2 * v[i] + (1 - a.beta2) * d * d;
    m[i] = mi;
    v[i] = vi;
    w[i] = w[i] * decay - rate * mi / (sqrtf(vi) * inv_sqrt_bc2 + a.eps);
  }
}

void check_float(const std::vector<Tensor>& ts, const char* op) {
  for (const Tensor& t : ts)
    WEFT_CHECK(t.dtype() == kFloat32 && t.device().is_cuda() && t.is_contiguous(), op,
               ": the fused GPU update takes contiguous float32 CUDA tensors, got ", t.dtype(), " ", t.shape(),
               " on ", t.device());
}

// Calls launch(table, count, grid) for each group of up to kMaxTensors tensors.
template <int K, class Launch>
void for_each_group(const std::vector<const std::vector<Tensor>*>& lists, Launch launch) {
  const size_t total = lists[0]->size();
  for (size_t s = 0; s < total; s += kMaxTensors) {
    TensorTable<K> t{};
    const int count = int(std::min<size_t>(kMaxTensors, total - s));
    int64_t largest = 0;
    for (int k = 0; k < count; ++k) {
      for (int l = 0; l < K; ++l)
        t.p[l][k] = (l < int(lists.size()) && !lists[l]->empty()) ? (*lists[l])[s + k].data<float>() : nullptr;
      t.n[k] = (*lists[0])[s + k].numel();
      largest = std::max(largest, t.n[k]);
    }
    const dim3 grid(std::min<unsigned>(detail::blocks_for(largest), 1024), count);
    launch(t, grid);
  }
}

}  // namespace

void sgd_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& bufs,
              const Tensor& lr, const SgdArgs& a) {
  if (params.empty()) return;
  check_float(params, "SGD");
  check_float(grads, "SGD");
  check_float(bufs, "SGD");
  for_each_group<3>({&params, &grads, &bufs}, [&](const TensorTable<3>& t, dim3 grid) {
    sgd_kernel<<<grid, detail::kThreads, 0, detail::stream()>>>(t, lr.data<float>(), a);
    WEFT_CUDA_LAUNCH_CHECK("SGD");
  });
}

void adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& m,
               const std::vector<Tensor>& v, const Tensor& lr, const Tensor& step, const AdamArgs& a) {
  if (params.empty()) return;
  check_float(params, "Adam");
  check_float(grads, "Adam");
  check_float(m, "Adam");
  check_float(v, "Adam");
  for_each_group<4>({&params, &grads, &m, &v}, [&](const TensorTable<4>& t, dim3 grid) {
    adam_kernel<<<grid, detail::kThreads, 0, detail::stream()>>>(t, lr.data<float>(), step.data<float>(), a);
    WEFT_CUDA_LAUNCH_CHECK("Adam");
  });
}

}  // namespace weft::cuda
