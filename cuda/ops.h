// The GPU side of the heavier raw ops: GEMMs through cuBLAS, the sparse Linear through
// cuSPARSE, convolutions through cuDNN (or im2col + cuBLAS without it), pooling, and the
// fused optimizer updates.
//
// Like kernels.h, these trust their callers (tensor/cpu/matmul.cpp, conv.cpp, pool.cpp,
// optim/) to have checked shapes and devices and allocated the outputs.
// Plain C++ header; built without CUDA, ops_disabled.cpp makes each one throw.
#pragma once

#include <cstdint>
#include <vector>

#include "../tensor/raw.h"

namespace weft::cuda {

// ---- GEMM (blas.cpp) ---------------------------------------------------------------------
// out (n, m), contiguous = a (n, k) @ b (k, m); a and b 2-D with any strides (row- or
// column-major views map onto cuBLAS without a copy, so transposes are free).
void gemm(const Tensor& out, const Tensor& a, const Tensor& b);
// out (n, out_f) = x (n, in) @ w (out_f, in)^T + bias (out_f) (bias may be undefined).
void linear(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias);

// ---- sparse Linear (sparse.cpp: cuSPARSE) ---------------------------------------------------
// y (B, out), contiguous = x (B, in), contiguous @ W^T + bias (out), W (out, in) in CSR:
// row_ptr (out + 1), col (nnz) int64 and values (nnz) float32, all on x's GPU.
void csr_linear(const Tensor& y, const Tensor& x, const Tensor& row_ptr, const Tensor& col, const Tensor& values,
                const Tensor& bias);

// ---- convolution (conv.cpp: cuDNN; im2col fallback in kernels/im2col.cu) -------------------
void conv2d(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p);
void conv2d_backward_input(const Tensor& gx, const Tensor& grad, const Tensor& w, const Conv2dParams& p);
void conv2d_backward_weight(const Tensor& gw, const Tensor& grad, const Tensor& x, const Conv2dParams& p);
// cuDNN when compiled in (the default) or the im2col + cuBLAS path; tests compare both.
void set_use_cudnn(bool on);
bool use_cudnn();
bool built_with_cudnn();

// ---- pooling (kernels/pool.cu) -------------------------------------------------------------
void max_pool2d(const Tensor& out, const Tensor& x, const Pool2dParams& p);
void max_pool2d_indices(const Tensor& out, const Tensor& x, const Pool2dParams& p);
void max_pool2d_backward(const Tensor& gx, const Tensor& grad, const Tensor& x, const Pool2dParams& p);
void avg_pool2d(const Tensor& out, const Tensor& x, const Pool2dParams& p);
void avg_pool2d_backward(const Tensor& gx, const Tensor& grad, const Pool2dParams& p);

// ---- fused optimizer updates (kernels/optim.cu) ---------------------------------------------
// One launch updates every parameter (a "multi-tensor apply"): the kernel gets a table of
// pointers, so 8 parameters cost one launch, not 8. Hyper-parameters that change between
// steps -- the learning rate and, for Adam, the step count -- are read from device
// memory, so a step captured in a CUDA graph keeps following the schedule on replay.
struct SgdArgs {
  float momentum, dampening, weight_decay;
  bool nesterov;
  bool first;  // momentum buffers hold nothing yet: buf = d (PyTorch's rule)
};
// lr is a 1-element float32 device tensor. bufs empty when momentum == 0.
void sgd_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& bufs,
              const Tensor& lr, const SgdArgs& a);

struct AdamArgs {
  float beta1, beta2, eps, weight_decay;
  bool decoupled;  // AdamW
};
// step is a 1-element float32 device tensor the kernel reads after the caller has
// incremented it (add_ on the device, also captured).
void adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& m,
               const std::vector<Tensor>& v, const Tensor& lr, const Tensor& step, const AdamArgs& a);

}  // namespace weft::cuda
