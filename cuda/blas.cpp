// GEMMs through cuBLAS, for row-major tensors: float32, float64, and bfloat16 / float16
// on tensor cores (HalfBackend hands 16-bit products here, DeviceBackend::gemm_16bit).
//
// cuBLAS is column-major. A row-major matrix X (r x c, leading dim ld) is, read
// column-major, X^T (c x r) with the same ld. So C = A @ B in row-major is computed as
// C^T = B^T @ A^T in column-major: swap the operands and pass each as "N" when it is
// row-major, "T" when it is a column-major view (a transpose). No copies either way.
#include <map>
#include <tuple>
#include <mutex>
#include <utility>

#include "../tensor/views.h"
#include "cuda_libraries.h"
#include "detail.h"
#include "ops.h"

namespace weft::cuda {

namespace {

void check_blas(cublasStatus_t st, const char* op, const char* call) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw Error(weft::detail::str(op, ": ", call, ": ", detail::cublas(op).status_string(st)));
}

// One handle per (device, stream, 16-bit or not), created on first use with its own
// workspace from weft's allocator (so cuBLAS never calls cudaMalloc itself, which a graph
// capture would not allow). Per stream, not per device: a handle's stream and workspace
// are state that two threads enqueueing on two streams would otherwise share. Apart for
// 16-bit products: their math mode differs (ready_handle), and two threads sharing a
// stream could otherwise switch it between another's set_math_mode and its GEMM.
cublasHandle_t handle_for(int device, cudaStream_t stream, bool half, const char* op) {
  static std::mutex mu;
  static std::map<std::tuple<int, cudaStream_t, bool>, cublasHandle_t> handles;
  std::lock_guard<std::mutex> lock(mu);
  cublasHandle_t& h = handles[{device, stream, half}];
  if (!h) {
    const detail::Cublas& api = detail::cublas(op);
    cublasHandle_t fresh = nullptr;
    check_blas(api.create(&fresh), op, "cublasCreate");
    constexpr size_t kWorkspace = 32 << 20;  // what cuBLAS recommends on Hopper
    check_blas(api.set_workspace(fresh, device_malloc(kWorkspace, device), kWorkspace), op, "cublasSetWorkspace");
    check_blas(api.set_stream(fresh, stream), op, "cublasSetStream");
    h = fresh;
  }
  return h;
}

// The handle, in the math mode of this product: float32 with TF32 tensor cores when
// allowed; 16-bit with every sum in float32 -- without the DISALLOW flag cuBLAS may add a
// split-K GEMM's partial sums in the output's 16-bit type (PyTorch's
// allow_bf16_reduced_precision_reduction = False), which is not the one rounding promised.
cublasHandle_t ready_handle(const char* op, DType dtype) {
  const int dev = current_device();
  cublasHandle_t h = handle_for(dev, detail::stream(dev), is_half(dtype), op);
  const cublasMath_t mode =
      is_half(dtype) ? cublasMath_t(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)
      : allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH
                     : CUBLAS_DEFAULT_MATH;
  check_blas(detail::cublas(op).set_math_mode(h, mode), op, "cublasSetMathMode");
  return h;
}

// A 2-D operand as cuBLAS sees it (see the top of the file).
struct Operand {
  Tensor t;
  cublasOperation_t op;  // N: row-major storage; T: column-major view
  int ld;
};

Operand as_operand(const Tensor& m) {
  const int64_t r = m.shape()[0], c = m.shape()[1];
  if (m.strides()[1] == 1 && m.strides()[0] >= std::max<int64_t>(c, 1)) return {m, CUBLAS_OP_N, int(m.strides()[0])};
  if (m.strides()[0] == 1 && m.strides()[1] >= std::max<int64_t>(r, 1)) return {m, CUBLAS_OP_T, int(m.strides()[1])};
  // A single column or row: its one stride is the leading dimension (a stride-0
  // broadcast, or anything else, is copied below).
  if (c == 1 && m.strides()[0] >= 1) return {m, CUBLAS_OP_N, int(m.strides()[0])};
  if (r == 1 && m.strides()[1] >= 1) return {m, CUBLAS_OP_T, int(m.strides()[1])};
  return {raw::contiguous(m), CUBLAS_OP_N, int(std::max<int64_t>(c, 1))};
}

// out (n x m, contiguous, row-major) = beta * out + a (n x k) @ b (k x m)
void gemm_into(const char* op, const Tensor& out, const Tensor& a2, const Tensor& b2, double beta) {
  const int n = int(a2.shape()[0]), k = int(a2.shape()[1]), m = int(b2.shape()[1]);
  if (n == 0 || m == 0) return;
  const Operand a = as_operand(a2), b = as_operand(b2);
  cublasHandle_t h = ready_handle(op, out.dtype());
  if (is_half(out.dtype())) {
    // Tensor cores: 16-bit operands, products summed in float32, C rounded once (the
    // result HalfBackend's float32 route gives, up to the order of the sums).
    const cudaDataType_t t = out.dtype() == kBFloat16 ? CUDA_R_16BF : CUDA_R_16F;
    const float one = 1, bt = float(beta);
    check_blas(detail::cublas(op).gemm_ex(h, b.op, a.op, m, n, k, &one, b.t.raw_data(), t, b.ld, a.t.raw_data(), t,
                                          a.ld, &bt, out.raw_data(), t, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               op, "cublasGemmEx");
  } else if (out.dtype() == kFloat32) {
    const float one = 1, bt = float(beta);
    check_blas(detail::cublas(op).sgemm(h, b.op, a.op, m, n, k, &one, b.t.data<float>(), b.ld, a.t.data<float>(), a.ld, &bt,
                           out.data<float>(), m),
               op, "cublasSgemm");
  } else {
    WEFT_CHECK(out.dtype() == kFloat64, op, ": expected float32 or float64 on the GPU, got ", out.dtype());
    const double one = 1;
    check_blas(detail::cublas(op).dgemm(h, b.op, a.op, m, n, k, &one, b.t.data<double>(), b.ld, a.t.data<double>(), a.ld, &beta,
                           out.data<double>(), m),
               op, "cublasDgemm");
  }
}

}  // namespace

void gemm(const Tensor& out, const Tensor& a, const Tensor& b) {
  if (a.shape()[1] == 0) {
    raw::fill_(out, 0);
    return;
  }
  gemm_into("matmul", out, a, b, 0.0);
}

// The bias is broadcast into out first, then the GEMM accumulates onto it (beta = 1).
void linear(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias) {
  if (bias.defined()) raw::copy_(out, bias);
  else raw::fill_(out, 0);
  if (x.shape()[1] == 0) return;
  gemm_into("linear", out, x, views::t(w), 1.0);
}

}  // namespace weft::cuda
