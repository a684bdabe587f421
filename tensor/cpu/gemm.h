// The one matrix-multiply kernel every CPU op that needs one calls: matmul, linear and
// the three products of a convolution (tensor/cpu/conv.cpp, winograd.cpp).
//
//   C (m, n) = alpha * op(A) @ op(B) + beta * C          all matrices row-major
//
// op(A) is (m, k): A itself, stored (m, k) with row stride lda, or, with trans_a, the
// transpose of an A stored (k, m) with row stride lda. op(B) is (k, n), likewise. A
// column-major matrix is a row-major one transposed, so every 2-D strided view with a
// unit stride fits without a copy. beta == 0 ignores what C held (it may be garbage).
//
// Which library runs it is chosen by measurement, the way cuDNN's algorithms are on the
// GPU. The candidates are the backends of gemm_backends.h (Eigen, OpenBLAS, oneDNN: those
// in the build). Calls fall into shape classes -- dtype, the two transposes, and the
// power of two just above each of m, n and k -- and the first call of a class times every
// candidate on its own operands (a few interleaved rounds, the fastest round of each)
// and keeps the fastest for the process. Calls of that class on other threads wait for
// the decision, so while a decision stands every call of its class runs on one backend.
// (Two products can still land in different classes where one would be expected: ops
// split rows over threads, so 127 rows on 2 threads are a 64-row and a 63-row call.) A
// library's table of CPU models plays no part: on a CPU OpenBLAS does not know, its
// generic kernels simply lose.
//
// WEFT_GEMM=eigen|openblas|onednn in the environment, or weft::set_gemm_backend()
// (tensor/kernels.h), forces one backend instead. Two processes measuring on a busy
// machine can choose differently for a class whose candidates are close, and the
// backends round differently: force one where results must agree bit for bit across
// processes or runs.
//
// Either way the call runs on the calling thread only: weft's ops split work across
// their own thread pool (tensor/thread_pool.h), and several threads may call at once.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "gemm_backends.h"

namespace weft::cpu {

template <class T>  // float or double
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// The backend a call of this shape runs on now (measuring the class first if need be;
// a and b are its operands, read only). For tests and benchmarks.
template <class T>
GemmBackend gemm_choice(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
                        const T* b, int64_t ldb);

// The backend every call is forced onto, or nullopt to measure (the default, unless
// WEFT_GEMM in the environment names one). Forcing a backend a dtype cannot use (oneDNN
// for double) leaves that dtype measured. Throws when this build lacks the backend.
void force_gemm_backend(std::optional<GemmBackend> b);
std::optional<GemmBackend> forced_gemm_backend();

// Calls run on each backend since the process started, indexed by GemmBackend.
std::array<int64_t, 3> gemm_calls();

// Wall time spent measuring since the process started (summed over threads), and the
// number of shape classes measured.
double gemm_measuring_seconds();
int64_t gemm_measurements();
// Of gemm_measuring_seconds(), the part that was the backends' first call on each thread
// (oneDNN generates its kernels then: ~30 ms once, which any program using it pays).
double gemm_startup_seconds();

// One measured shape class: the shape of the call that measured it, the fastest round
// of each candidate in seconds (0 where not a candidate; a candidate dropped as a clear
// loser keeps its time from the rounds it ran), and the winner.
struct GemmDecision {
  bool is_double;
  bool trans_a, trans_b;
  int64_t m, n, k;
  std::array<double, 3> seconds;
  GemmBackend chosen;
};
std::vector<GemmDecision> gemm_decisions();

// Forgets every measured decision (the next call of each class measures again).
void reset_gemm_decisions();

}  // namespace weft::cpu
