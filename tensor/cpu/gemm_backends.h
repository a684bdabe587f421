// The matrix-multiply libraries weft can run a GEMM on, each behind the same call, so
// that gemm.cpp can time them against each other and run each shape on the fastest.
//
//   Eigen     header-only C++ templates, compiled for the build machine (-march=native
//             unless -Dnative=false). Always there; the only one for a build without the
//             others, and the reference the tests compare the others with.
//   OpenBLAS  hand-written assembly micro-kernels, one set per CPU family, chosen when
//             the library loads from its own table of CPU models. A CPU newer than the
//             library (Debian 12's 0.3.21 predates Sapphire Rapids and Zen 4 in places)
//             can get its generic Prescott (SSE3) kernels instead, at a third of the
//             speed: openblas_fallback() says when that happened.
//   oneDNN    Intel's deep-learning primitives (what PyTorch uses on CPUs): its sgemm
//             generates its kernels at run time (JIT) for the instruction sets the CPU
//             reports (AVX2, AVX-512, ...), so it needs no table of models. float only.
//
// Every backend runs a call on the calling thread alone: weft's ops split their work over
// weft's own pool (tensor/thread_pool.h), and several pool threads may call at once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace weft::cpu {

enum class GemmBackend { eigen, openblas, onednn };
inline constexpr GemmBackend kGemmBackends[] = {GemmBackend::eigen, GemmBackend::openblas, GemmBackend::onednn};

const char* backend_name(GemmBackend b);  // "eigen", "openblas", "onednn" (as WEFT_GEMM spells them)
// The backend of that name, or nullopt for an unknown name.
std::optional<GemmBackend> backend_named(std::string_view name);

// Whether this build has backend b and it can run T (float or double) here. OpenBLAS
// counts only as its pthread build: its serial build gives wrong results when two threads
// call it at once (seen with Debian's libopenblas0-serial).
template <class T>
bool backend_available(GemmBackend b);
// Whether backend b can run here at all (for float or for double).
bool backend_in_build(GemmBackend b);

// C (m, n) = alpha * op(A) @ op(B) + beta * C on backend b, as gemm() in gemm.h (k > 0,
// m, n > 0). `which` must be available for T.
template <class T>
void backend_gemm(GemmBackend which, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                  int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// "OpenBLAS 0.3.21 (Cooperlake kernels)", "oneDNN 2.6.3 (avx512_core_bf16 JIT)", "Eigen 3.4.0".
std::string backend_version(GemmBackend b);

// When OpenBLAS loaded generic kernels below what this CPU can run (Prescott, Nehalem,
// ... on a CPU with AVX2 or AVX-512), a sentence saying so; else empty.
std::string openblas_fallback();

}  // namespace weft::cpu
