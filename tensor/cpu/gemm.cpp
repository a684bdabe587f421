// gemm through OpenBLAS when weft was configured with it and the library loaded at run
// time can be called from several threads at once; else through Eigen. See gemm.h.
#include "gemm.h"

#include <Eigen/Core>

#include <climits>
#include <cstdlib>
#include <string>

#include "../error.h"
#include "weft_config.h"

#if WEFT_HAVE_BLAS
#include <cblas.h>
extern "C" void blas_thread_shutdown_(void) __attribute__((weak));  // OpenBLAS's pthread build only
#endif

namespace weft::cpu {

namespace {

// C = beta * C, for k == 0 (an empty sum), where BLAS would reject the leading dimensions.
template <class T>
void scale(int64_t m, int64_t n, T beta, T* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
}

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
template <class M>
using ConstMap = Eigen::Map<const M, 0, Eigen::OuterStride<>>;

// op(X) (rows, cols) as an Eigen map: a transposed row-major matrix is a column-major one.
template <class T, class F>
void with_operand(bool trans, const T* p, int64_t rows, int64_t cols, int64_t ld, F&& f) {
  if (trans) f(ConstMap<ColMat<T>>(p, rows, cols, Eigen::OuterStride<>(ld)));
  else f(ConstMap<RowMat<T>>(p, rows, cols, Eigen::OuterStride<>(ld)));
}

template <class T>
void eigen_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
                int64_t ldb, T beta, T* c, int64_t ldc) {
  Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>> C(c, m, n, Eigen::OuterStride<>(ldc));
  if (beta == T(0)) C.setZero();
  else if (beta != T(1)) C *= beta;
  with_operand(ta, a, m, k, lda, [&](const auto& A) {
    with_operand(tb, b, k, n, ldb, [&](const auto& B) {
      if (alpha == T(1)) C.noalias() += A * B;
      else C.noalias() += alpha * (A * B);
    });
  });
}

#if WEFT_HAVE_BLAS
// Whether OpenBLAS may be used, decided once. Its single-threaded ("serial") build keeps
// its packing buffers in shared statics and gives wrong results when two threads call it
// at once (seen with Debian's libopenblas0-serial); its OpenMP build's thread count is
// the calling thread's OpenMP setting, which weft has no business changing. So only the
// pthread build (openblas_get_parallel() == 1, Debian's default) is used, told to run
// each call on the calling thread alone -- weft's ops already split their work over
// weft's pool -- with the worker threads it started when it loaded shut down: idle, they
// still cost about 5% of a CNN training step on 2 cores. Both settings are process-wide:
// other code in the process that calls OpenBLAS gets one thread too.
//
// WEFT_GEMM=eigen in the environment picks Eigen anyway, to compare the two in one build.
bool use_blas() {
  static const bool ok = [] {
    if (const char* env = std::getenv("WEFT_GEMM"); env && std::string(env) == "eigen") return false;
    if (openblas_get_parallel() != 1) return false;
    openblas_set_num_threads(1);
    if (blas_thread_shutdown_) blas_thread_shutdown_();
    return true;
  }();
  return ok;
}

CBLAS_TRANSPOSE op(bool trans) { return trans ? CblasTrans : CblasNoTrans; }

// BLAS takes 32-bit sizes.
blasint fits(int64_t v) {
  WEFT_CHECK(v <= INT_MAX, "gemm: a matrix dimension or stride of ", v, " is beyond what BLAS takes (2^31 - 1)");
  return static_cast<blasint>(v);
}

void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, op(ta), op(tb), fits(m), fits(n), fits(k), alpha, a, fits(lda), b, fits(ldb), beta, c,
              fits(ldc));
}
void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
               const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, op(ta), op(tb), fits(m), fits(n), fits(k), alpha, a, fits(lda), b, fits(ldb), beta, c,
              fits(ldc));
}
#endif

}  // namespace

template <class T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) return scale(m, n, beta, c, ldc);
#if WEFT_HAVE_BLAS
  if (use_blas()) return blas_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
  eigen_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                          float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                           int64_t, double, double*, int64_t);

const char* gemm_backend() {
  static const std::string name = [] {
#if WEFT_HAVE_BLAS
    // The kernels in use: OpenBLAS picks them for the CPU when it loads, unless
    // OPENBLAS_CORETYPE in the environment names others.
    if (use_blas()) return std::string("OpenBLAS (") + openblas_get_config() + ", " + openblas_get_corename() + " kernels)";
#endif
    return "Eigen " + std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
           std::to_string(EIGEN_MINOR_VERSION);
  }();
  return name.c_str();
}

}  // namespace weft::cpu
