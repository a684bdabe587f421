// The GPU side of the heavier raw ops: GEMMs through cuBLAS, the sparse Linear through
// cuSPARSE, convolutions through cuDNN (or im2col + cuBLAS without it), pooling, and the
// fused optimizer updates.
//
// Like kernels.h, internal to cuda/: the CUDA backend (backend.cpp) forwards the raw ops
// (tensor/cpu/matmul.cpp, conv.cpp, pool.cpp, optim.cpp) here after they have checked
// shapes and devices and allocated the outputs. Compiled only in a build with CUDA.
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
// memory (h.lr_device, h.step_device), so a step captured in a CUDA graph keeps following
// the schedule on replay. The per-element math is tensor/optim_math.h, as on the CPU.
void sgd_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& bufs,
              const raw::SgdHyper& h);
void adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& m,
               const std::vector<Tensor>& v, const raw::AdamHyper& h);

}  // namespace weft::cuda
