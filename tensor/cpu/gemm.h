// The one matrix-multiply kernel every CPU op that needs one calls: matmul, linear and
// the three products of a convolution (tensor/cpu/conv.cpp).
//
//   C (m, n) = alpha * op(A) @ op(B) + beta * C          all matrices row-major
//
// op(A) is (m, k): A itself, stored (m, k) with row stride lda, or, with trans_a, the
// transpose of an A stored (k, m) with row stride lda. op(B) is (k, n), likewise. A
// column-major matrix is a row-major one transposed, so every 2-D strided view with a
// unit stride fits without a copy. beta == 0 ignores what C held (it may be garbage).
//
// Two backends:
//   OpenBLAS  hand-tuned assembly micro-kernels per CPU family; measured on the 2-core
//             AMD EPYC (Zen 4) development machine at about 46 G multiply-adds/s on the
//             sample CNN's conv GEMMs, against Eigen's 36. Used when weft is configured
//             with it (-Dblas=auto finds it through pkg-config) and the library is a
//             threaded build (see use_blas in gemm.cpp).
//   Eigen     header-only and portable; included by gemm.cpp alone, since it is a large
//             header and keeping it in one file keeps the build quick. WEFT_GEMM=eigen
//             in the environment chooses it in a build that has OpenBLAS.
// Either way the call runs on the calling thread only: weft's ops split work across
// their own thread pool (tensor/thread_pool.h), so the BLAS library is told to stay
// single-threaded and several threads may call gemm at once.
#pragma once

#include <cstdint>

namespace weft::cpu {

template <class T>  // float or double
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// "OpenBLAS 0.3.21 ..." (its build configuration) or "Eigen 3.4.0": what gemm runs on.
const char* gemm_backend();

}  // namespace weft::cpu
