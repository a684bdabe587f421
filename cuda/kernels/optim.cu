// Fused optimizer updates over all parameters at once ("multi-tensor apply").
//
// A model has a handful of parameter tensors; updating each with its own launch costs
// more in launches than in math on small models. Here one launch covers up to
// kMaxTensors tensors: blockIdx.y picks the tensor, blockIdx.x strides over its elements.
// The learning rate and Adam's step count are read from device memory so that a CUDA
// graph replay sees their current values (see ops.h).
#include <cmath>

#include "../../tensor/optim_math.h"
#include "../detail.h"
#include "../ops.h"

namespace weft::cuda {

namespace {

constexpr int kMaxTensors = 24;

// The hyper-parameters that stay fixed between steps, passed by value in the launch.
struct SgdFlags {
  float momentum, dampening, weight_decay;
  bool nesterov, first;
};
struct AdamFlags {
  double beta1, beta2, eps, weight_decay;  // double: the step's scalars are computed in double
  bool decoupled;
};

template <int K>
struct TensorTable {
  float* p[K][kMaxTensors];  // K pointer lists: param, grad, state buffers
  int64_t n[kMaxTensors];
};

// Each thread updates elements of tensor blockIdx.y with the formulas of
// tensor/optim_math.h, the ones the CPU loop calls.
__global__ void sgd_kernel(TensorTable<3> t, const float* __restrict__ lr_ptr, SgdFlags f) {
  const int k = blockIdx.y;
  float* __restrict__ w = t.p[0][k];
  const float* __restrict__ g = t.p[1][k];
  float* __restrict__ b = t.p[2][k];
  const optim_math::SgdCoeffs<float> c{*lr_ptr, f.weight_decay, f.momentum, 1 - f.dampening, f.first, f.nesterov};
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < t.n[k]; i += int64_t(gridDim.x) * blockDim.x)
    optim_math::sgd_update(w[i], g[i], b ? b + i : nullptr, c);
}

// The step's scalars come from device memory (lr, step) and are computed in double, as
// on the CPU, by one thread per block.
__global__ void adam_kernel(TensorTable<4> t, const float* __restrict__ lr_ptr, const float* __restrict__ step_ptr,
                            AdamFlags f) {
  const int k = blockIdx.y;
  float* __restrict__ w = t.p[0][k];
  const float* __restrict__ g = t.p[1][k];
  float* __restrict__ m = t.p[2][k];
  float* __restrict__ v = t.p[3][k];
  __shared__ optim_math::AdamCoeffs<float> c;
  if (threadIdx.x == 0)
    c = optim_math::adam_coeffs<float>(*lr_ptr, *step_ptr, f.beta1, f.beta2, f.eps, f.weight_decay, f.decoupled);
  __syncthreads();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < t.n[k]; i += int64_t(gridDim.x) * blockDim.x)
    optim_math::adam_update(w[i], g[i], m[i], v[i], c);
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
              const raw::SgdHyper& h) {
  if (params.empty()) return;
  check_float(params, "SGD");
  check_float(grads, "SGD");
  check_float(bufs, "SGD");
  const SgdFlags f{float(h.momentum), float(h.dampening), float(h.weight_decay), h.nesterov, h.first};
  for_each_group<3>({&params, &grads, &bufs}, [&](const TensorTable<3>& t, dim3 grid) {
    sgd_kernel<<<grid, detail::kThreads, 0, detail::stream()>>>(t, h.lr_device.data<float>(), f);
    WEFT_CUDA_LAUNCH_CHECK("SGD");
  });
}

void adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& m,
               const std::vector<Tensor>& v, const raw::AdamHyper& h) {
  if (params.empty()) return;
  check_float(params, "Adam");
  check_float(grads, "Adam");
  check_float(m, "Adam");
  check_float(v, "Adam");
  const AdamFlags f{h.beta1, h.beta2, h.eps, h.weight_decay, h.decoupled};
  for_each_group<4>({&params, &grads, &m, &v}, [&](const TensorTable<4>& t, dim3 grid) {
    adam_kernel<<<grid, detail::kThreads, 0, detail::stream()>>>(t, h.lr_device.data<float>(),
                                                                 h.step_device.data<float>(), f);
    WEFT_CUDA_LAUNCH_CHECK("Adam");
  });
}

}  // namespace weft::cuda
