// A pruned Linear in CSR on the GPU, through cuSPARSE's SpMM (prune::SparseLinear's GPU
// path; its CPU kernels are in prune/sparse_linear.cpp).
//
// y (B, out) = x (B, in) @ W^T + bias, W (out, in) in CSR. cuSPARSE multiplies a CSR
// matrix by a dense one, C = A @ B, and reads dense matrices in either order; so with
// A = W (out, in), B = x^T (in, B) and C = y^T (out, B), both B and C are the row-major
// x and y read as column-major matrices, and nothing is transposed or copied.
#include <map>
#include <mutex>
#include <utility>

#include "cuda_libraries.h"
#include "detail.h"
#include "ops.h"

namespace weft::cuda {

namespace {

void check_sparse(cusparseStatus_t st, const char* call) {
  if (st != CUSPARSE_STATUS_SUCCESS)
    throw Error(weft::detail::str("SparseLinear: ", call, ": ", detail::cusparse("SparseLinear").error_string(st)));
}

// One handle per (device, stream), bound to its stream when created (a handle's stream
// is state that two threads enqueueing on two streams would otherwise share).
cusparseHandle_t handle_for(int device, cudaStream_t stream) {
  static std::mutex mu;
  static std::map<std::pair<int, cudaStream_t>, cusparseHandle_t> handles;
  std::lock_guard<std::mutex> lock(mu);
  cusparseHandle_t& h = handles[{device, stream}];
  if (!h) {
    const detail::Cusparse& sp = detail::cusparse("SparseLinear");
    cusparseHandle_t fresh = nullptr;
    check_sparse(sp.create(&fresh), "cusparseCreate");
    check_sparse(sp.set_stream(fresh, stream), "cusparseSetStream");
    h = fresh;
  }
  return h;
}

// Scratch memory from weft's caching allocator, returned when the scope ends (after the
// work using it is queued: stream order keeps that safe).
struct Buffer {
  void* p = nullptr;
  int dev;
  Buffer(size_t n, int d) : dev(d) {
    if (n) p = device_malloc(n, dev);
  }
  ~Buffer() {
    if (p) device_free(p, dev);
  }
};

}  // namespace

void csr_linear(const Tensor& y, const Tensor& x, const Tensor& row_ptr, const Tensor& col, const Tensor& values,
                const Tensor& bias) {
  const int64_t batch = x.shape()[0], in = x.shape()[1], out = y.shape()[1], nnz = values.numel();
  DeviceGuard on(x.device().index);  // first: the copy's kernel runs on x's device too
  raw::copy_(y, bias);  // y = bias, broadcast over the batch; SpMM adds to it (beta = 1)
  if (nnz == 0 || batch == 0) return;
  const detail::Cusparse& sp = detail::cusparse("SparseLinear");
  const int dev = x.device().index;
  cusparseHandle_t h = handle_for(dev, detail::stream(dev));

  cusparseSpMatDescr_t a = nullptr;
  cusparseDnMatDescr_t b = nullptr, c = nullptr;
  check_sparse(sp.create_csr(&a, out, in, nnz, row_ptr.raw_data(), col.raw_data(), values.raw_data(),
                             CUSPARSE_INDEX_64I, CUSPARSE_INDEX_64I, CUSPARSE_INDEX_BASE_ZERO, CUDA_R_32F),
               "cusparseCreateCsr");
  // The descriptors are destroyed however this scope is left.
  struct Descriptors {
    const detail::Cusparse& sp;
    cusparseSpMatDescr_t& a;
    cusparseDnMatDescr_t &b, &c;
    ~Descriptors() {
      if (c) sp.destroy_dn_mat(c);
      if (b) sp.destroy_dn_mat(b);
      if (a) sp.destroy_sp_mat(a);
    }
  } guard{sp, a, b, c};
  check_sparse(sp.create_dn_mat(&b, in, batch, in, x.raw_data(), CUDA_R_32F, CUSPARSE_ORDER_COL),
               "cusparseCreateDnMat");
  check_sparse(sp.create_dn_mat(&c, out, batch, out, y.raw_data(), CUDA_R_32F, CUSPARSE_ORDER_COL),
               "cusparseCreateDnMat");
  const float one = 1.0f;
  const auto op = CUSPARSE_OPERATION_NON_TRANSPOSE;
  size_t bytes = 0;
  check_sparse(sp.spmm_buffer_size(h, op, op, &one, a, b, &one, c, CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT, &bytes),
               "cusparseSpMM_bufferSize");
  Buffer buf(bytes, dev);
  check_sparse(sp.spmm(h, op, op, &one, a, b, &one, c, CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT, buf.p), "cusparseSpMM");
}

}  // namespace weft::cuda
