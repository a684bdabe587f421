// cuBLAS and cuSPARSE, opened when the first op needs them rather than linked.
//
// Why: libcublasLt, which libcublas pulls in, is a few hundred megabytes, and merely
// loading it at program start costs about 210 MB of resident memory (measured on the
// development machine: an empty program linked with -lcublas peaks at 217 MB, one
// without it at 1 MB; -lcusparse costs 38 MB). Every weft program paid that, also on
// machines without a GPU and in CPU-only runs; train_mlp's peak RSS fell from ~465 MB to
// ~255 MB when it stopped. cudart, cuDNN and NCCL stay linked: they cost a few MB each.
//
// Each library is dlopen()ed as lib<name>.so.<major of the headers weft was compiled
// with>, first by name (LD_LIBRARY_PATH, libweft's run path, the ld.so cache), then in
// the CUDA library directories the build found; then the handful of functions weft
// calls are looked up. Only cuda/ includes this header.
#pragma once

#include <cublas_v2.h>
#include <cusparse.h>

namespace weft::cuda::detail {

// The cuBLAS entry points weft uses (cuda/blas.cpp), as function pointers. (cublas_v2.h
// maps most names to their _v2 symbols with macros; decltype and the loader see the
// mapped names.)
struct Cublas {
  decltype(&cublasCreate) create;
  decltype(&cublasSetWorkspace) set_workspace;
  decltype(&cublasSetStream) set_stream;
  decltype(&cublasSetMathMode) set_math_mode;
  decltype(&cublasSgemm) sgemm;
  decltype(&cublasDgemm) dgemm;
  // bfloat16 / float16 operands, float32 accumulation. Spelled out: C++ sees cublasGemmEx
  // overloaded (a cudaDataType compute type is accepted too), the library exports this one.
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                            const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                            cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
  decltype(&cublasGetStatusString) status_string;
  decltype(&cublasGetProperty) get_property;
};

// The cuSPARSE entry points weft uses (cuda/sparse.cpp): CSR times dense (SpMM).
struct Cusparse {
  decltype(&cusparseCreate) create;
  decltype(&cusparseSetStream) set_stream;
  decltype(&cusparseCreateCsr) create_csr;
  decltype(&cusparseCreateDnMat) create_dn_mat;
  decltype(&cusparseDestroySpMat) destroy_sp_mat;
  decltype(&cusparseDestroyDnMat) destroy_dn_mat;
  decltype(&cusparseSpMM_bufferSize) spmm_buffer_size;
  decltype(&cusparseSpMM) spmm;
  decltype(&cusparseGetErrorString) error_string;
  decltype(&cusparseGetProperty) get_property;
};

// The loaded libraries; throw weft::Error naming the library and dlerror()'s reason when
// one cannot be opened or lacks a function. `op` names the caller in that error.
const Cublas& cublas(const char* op);
const Cusparse& cusparse(const char* op);

}  // namespace weft::cuda::detail
