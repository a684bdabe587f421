// gemm through OpenBLAS when weft was configured with it, else through Eigen. See gemm.h.
#include "gemm.h"

#include <climits>
#include <mutex>
#include <string>

#include "../error.h"
#include "weft_config.h"

#if WEFT_HAVE_BLAS
#include <cblas.h>
#else
#include <Eigen/Core>
#endif

namespace weft::cpu {

namespace {
// C = beta * C, for k == 0 (an empty sum), where BLAS would reject the leading dimensions.
template <class T>
void scale(int64_t m, int64_t n, T beta, T* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
}
}  // namespace

#if WEFT_HAVE_BLAS

namespace {
// OpenBLAS's pthread build would otherwise start its own threads for every large call,
// on top of (and fighting with) weft's pool.
void single_threaded_once() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

CBLAS_TRANSPOSE op(bool trans) { return trans ? CblasTrans : CblasNoTrans; }

// BLAS takes 32-bit sizes.
blasint fits(int64_t v) {
  WEFT_CHECK(v <= INT_MAX, "gemm: a matrix dimension or stride of ", v, " is beyond what BLAS takes (2^31 - 1)");
  return static_cast<blasint>(v);
}
}  // namespace

template <>
void gemm<float>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) return scale(m, n, beta, c, ldc);
  single_threaded_once();
  cblas_sgemm(CblasRowMajor, op(ta), op(tb), fits(m), fits(n), fits(k), alpha, a, fits(lda), b, fits(ldb), beta, c,
              fits(ldc));
}

template <>
void gemm<double>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                  const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) return scale(m, n, beta, c, ldc);
  single_threaded_once();
  cblas_dgemm(CblasRowMajor, op(ta), op(tb), fits(m), fits(n), fits(k), alpha, a, fits(lda), b, fits(ldb), beta, c,
              fits(ldc));
}

const char* gemm_backend() {
  static const std::string name = std::string("OpenBLAS ") + openblas_get_config();
  return name.c_str();
}

#else  // Eigen

namespace {
template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
template <class M>
using ConstMap = Eigen::Map<const M, 0, Eigen::OuterStride<>>;

// op(X) (rows, cols) as an Eigen map: a transposed row-major matrix is a column-major one.
template <class T, class F>
decltype(auto) with_operand(bool trans, const T* p, int64_t rows, int64_t cols, int64_t ld, F&& f) {
  if (trans) return f(ConstMap<ColMat<T>>(p, rows, cols, Eigen::OuterStride<>(ld)));
  return f(ConstMap<RowMat<T>>(p, rows, cols, Eigen::OuterStride<>(ld)));
}
}  // namespace

template <class T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) return scale(m, n, beta, c, ldc);
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

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                          float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                           int64_t, double, double*, int64_t);

const char* gemm_backend() {
  static const std::string name = "Eigen " + std::to_string(EIGEN_WORLD_VERSION) + "." +
                                  std::to_string(EIGEN_MAJOR_VERSION) + "." + std::to_string(EIGEN_MINOR_VERSION);
  return name.c_str();
}

#endif

}  // namespace weft::cpu
