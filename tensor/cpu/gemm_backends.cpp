// Eigen, OpenBLAS and oneDNN behind one call. See gemm_backends.h. Eigen is a large
// header and is included here alone, which keeps the build quick.
#include "gemm_backends.h"

#include <Eigen/Core>

#include <algorithm>
#include <cctype>
#include <climits>
#include <type_traits>

#include "../error.h"
#include "weft_config.h"

#if WEFT_HAVE_BLAS
#include <cblas.h>
extern "C" void blas_thread_shutdown_(void) __attribute__((weak));  // OpenBLAS's pthread build only
#endif
#if WEFT_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
// libgomp's, declared here rather than through <omp.h> so that weft builds without
// -fopenmp (oneDNN's Debian build runs its threads through OpenMP).
extern "C" int omp_get_max_threads(void);
extern "C" void omp_set_num_threads(int);
#endif

namespace weft::cpu {

const char* backend_name(GemmBackend b) {
  switch (b) {
    case GemmBackend::eigen: return "eigen";
    case GemmBackend::openblas: return "openblas";
    case GemmBackend::onednn: return "onednn";
  }
  return "?";
}

std::optional<GemmBackend> backend_named(std::string_view name) {
  for (GemmBackend b : kGemmBackends)
    if (name == backend_name(b)) return b;
  return std::nullopt;
}

namespace {

// ---- Eigen -------------------------------------------------------------------------

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

// ---- OpenBLAS ----------------------------------------------------------------------

#if WEFT_HAVE_BLAS
// Only the pthread build (openblas_get_parallel() == 1, Debian's default) is used: the
// serial build keeps its packing buffers in shared statics, and the OpenMP build's thread
// count is the calling thread's OpenMP setting. It is told to run each call on the
// calling thread alone, with the worker threads it started when it loaded shut down:
// idle, they still cost about 5% of a CNN training step on 2 cores. Both settings are
// process-wide: other code in the process that calls OpenBLAS gets one thread too.
bool openblas_ok() {
  static const bool ok = [] {
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

void openblas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                   const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, op(ta), op(tb), fits(m), fits(n), fits(k), alpha, a, fits(lda), b, fits(ldb), beta, c,
              fits(ldc));
}
void openblas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                   const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, op(ta), op(tb), fits(m), fits(n), fits(k), alpha, a, fits(lda), b, fits(ldb), beta, c,
              fits(ldc));
}

// The instruction set an OpenBLAS kernel set is written for (0 SSE, 1 AVX, 2 AVX2+FMA,
// 3 AVX-512), from the core names of OpenBLAS's x86-64 dynamic build.
int openblas_core_level(std::string core) {
  std::transform(core.begin(), core.end(), core.begin(), [](unsigned char ch) { return std::tolower(ch); });
  for (const char* c : {"skylakex", "cooperlake", "sapphirerapids"})
    if (core == c) return 3;
  for (const char* c : {"haswell", "zen", "excavator", "skylake"})
    if (core == c) return 2;
  for (const char* c : {"sandybridge", "bulldozer", "piledriver", "steamroller"})
    if (core == c) return 1;
  return 0;  // Prescott, Core2, Penryn, Dunnington, Nehalem, Atom, Opteron, Barcelona, ...
}
#endif

// ---- oneDNN ------------------------------------------------------------------------

#if WEFT_HAVE_ONEDNN
// dnnl_sgemm takes row-major operands, like weft. It runs on as many threads as the
// calling thread's OpenMP setting allows, so that setting is one for the call and then
// put back: weft's pool threads split the work already, and the caller's own OpenMP code
// keeps its setting.
void onednn_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const int threads = omp_get_max_threads();
  if (threads != 1) omp_set_num_threads(1);
  const dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  if (threads != 1) omp_set_num_threads(threads);
  WEFT_CHECK(st == dnnl_success, "gemm: oneDNN's dnnl_sgemm failed (status ", static_cast<int>(st), ") for m=", m,
             " n=", n, " k=", k);
}

// Only a oneDNN that runs its threads through OpenMP can be held to the calling thread
// (Debian's is; a TBB or threadpool build would use every core from every pool thread).
bool onednn_ok() {
  static const bool ok = dnnl_version()->cpu_runtime == DNNL_RUNTIME_OMP;
  return ok;
}

const char* onednn_isa() {
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "another ISA";
  }
}
#endif

}  // namespace

template <class T>
bool backend_available(GemmBackend b) {
  switch (b) {
    case GemmBackend::eigen: return true;
    case GemmBackend::openblas:
#if WEFT_HAVE_BLAS
      return openblas_ok();
#else
      return false;
#endif
    case GemmBackend::onednn:
#if WEFT_HAVE_ONEDNN
      return std::is_same_v<T, float> && onednn_ok();
#else
      return false;
#endif
  }
  return false;
}

template <class T>
void backend_gemm(GemmBackend which, bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                  int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  switch (which) {
    case GemmBackend::eigen: return eigen_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    case GemmBackend::openblas:
#if WEFT_HAVE_BLAS
      return openblas_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#else
      break;
#endif
    case GemmBackend::onednn:
#if WEFT_HAVE_ONEDNN
      if constexpr (std::is_same_v<T, float>) return onednn_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
      break;
  }
  throw Error(detail::str("gemm: backend ", backend_name(which), " is not available for this dtype in this build"));
}

bool backend_in_build(GemmBackend b) { return backend_available<float>(b) || backend_available<double>(b); }

template bool backend_available<float>(GemmBackend);
template bool backend_available<double>(GemmBackend);
template void backend_gemm<float>(GemmBackend, bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                                  const float*, int64_t, float, float*, int64_t);
template void backend_gemm<double>(GemmBackend, bool, bool, int64_t, int64_t, int64_t, double, const double*,
                                   int64_t, const double*, int64_t, double, double*, int64_t);

std::string backend_version(GemmBackend b) {
  switch (b) {
    case GemmBackend::eigen:
      return detail::str("Eigen ", EIGEN_WORLD_VERSION, ".", EIGEN_MAJOR_VERSION, ".", EIGEN_MINOR_VERSION);
    case GemmBackend::openblas:
#if WEFT_HAVE_BLAS
    {
      // openblas_get_config(): "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Cooperlake MAX_THREADS=64"
      std::string config = openblas_get_config();
      const size_t version_end = config.find(' ', config.find(' ') + 1);
      return detail::str(config.substr(0, version_end), " (", openblas_get_corename(), " kernels)");
    }
#else
      return "OpenBLAS (not in this build)";
#endif
    case GemmBackend::onednn:
#if WEFT_HAVE_ONEDNN
    {
      const dnnl_version_t* v = dnnl_version();
      return detail::str("oneDNN ", v->major, ".", v->minor, ".", v->patch, " (", onednn_isa(), " JIT)");
    }
#else
      return "oneDNN (not in this build)";
#endif
  }
  return "?";
}

std::string openblas_fallback() {
#if WEFT_HAVE_BLAS
  __builtin_cpu_init();
  const int cpu = __builtin_cpu_supports("avx512f") ? 3 : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 2 : 0;
  const char* core = openblas_get_corename();
  if (cpu >= 2 && openblas_core_level(core) < 2)
    return detail::str("OpenBLAS runs its generic ", core, " kernels on this ", cpu == 3 ? "AVX-512" : "AVX2",
                       " CPU (it does not know the CPU model, or OPENBLAS_CORETYPE says so)");
#endif
  return "";
}

}  // namespace weft::cpu
