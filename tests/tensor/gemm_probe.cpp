// Run by tests/tensor/test_gemm.cpp in a child process whose environment it sets (e.g.
// OPENBLAS_CORETYPE=Prescott, which OpenBLAS reads once, when it loads). Prints what the
// GEMM choice saw, one `key: value` line each:
//   cpu_avx2: 0|1          whether this CPU has AVX2 and FMA
//   openblas: <version>    OpenBLAS's version and kernels, or "none"
//   fallback: <sentence>   openblas_fallback(), or "none"
//   choice: <backend>      the backend chosen for a 512^3 float NN product
//   fast_rival: 0|1        whether the build has an AVX2 rival to OpenBLAS (oneDNN, or
//                          Eigen compiled with AVX2)
//   report: <line>         weft::gemm_report()
#include <cstdio>
#include <vector>

#include "tensor/cpu/gemm.h"
#include "tensor/kernels.h"

int main() {
  using namespace weft;
  __builtin_cpu_init();
  std::printf("cpu_avx2: %d\n", __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0);
  const bool has_openblas = cpu::backend_available<float>(cpu::GemmBackend::openblas);
  std::printf("openblas: %s\n", has_openblas ? cpu::backend_version(cpu::GemmBackend::openblas).c_str() : "none");
  const std::string fallback = cpu::openblas_fallback();
  std::printf("fallback: %s\n", fallback.empty() ? "none" : fallback.c_str());
  const int64_t n = 512;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  cpu::gemm<float>(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  std::printf("choice: %s\n", cpu::backend_name(cpu::gemm_choice<float>(false, false, n, n, n, a.data(), n, b.data(), n)));
  const bool eigen_avx2 =
#ifdef __AVX2__
      true;
#else
      false;
#endif
  std::printf("fast_rival: %d\n", cpu::backend_available<float>(cpu::GemmBackend::onednn) || eigen_avx2 ? 1 : 0);
  std::printf("report: %s\n", gemm_report().c_str());
  return c[0] == 0.5f * 0.25f * n ? 0 : 1;
}
