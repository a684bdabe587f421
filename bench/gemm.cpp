// The MLP's GEMMs against the machine's fp32 peak, one core.
//
// 1. Peak: the fp32 multiply-add rate of one core, measured with twelve independent FMA
//    chains on 512-bit (AVX-512) and 256-bit (AVX2) registers -- enough in flight to
//    cover the FMA latency on every x86 core we know -- 1.2 G FMA instructions each
//    (0.2 to 0.4 s). A CPU does
//    two FMA instructions per cycle at best, so 16 lanes x 2 x 2 flops = 64 flops per
//    cycle with AVX-512 (32 on cores that split 512-bit ops in two, like Zen 4).
// 2. The eight products of one training step of the sample MLP (784-512-256-10, batch
//    128): three forward (x @ W^T: NT), two input gradients (dy @ W: NN; the first
//    layer's input needs none) and three weight gradients (dy^T @ x: TN). Each runs
//    through weft's gemm with the measured choice ("auto"), and on each backend alone.
//    The line "all" is flop-weighted: total flops over total time, i.e. the GEMM part of
//    a training step.
//
//    With --model deep-mlp: the three products of one of train_pipeline's 1024 -> 1024
//    layers instead (pipelining runs them on microbatches: try --batch 16, 64, 512).
//    --beta 1 accumulates into C (C += A @ B), as a weight gradient summed over
//    microbatches does.
//
//   build/bench/gemm [--batch 128] [--seconds 0.2] [--model mlp|deep-mlp] [--beta 0|1]
// The target (issue 22): "auto" at or above 80% of the better peak.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tensor/cpu/gemm.h"
#include "timing.h"
#include "weft.h"

using namespace weft;
using bench::Clock;
using bench::seconds_since;

namespace {

// GFLOP/s of twelve independent FMA chains, 16 or 8 floats wide. Written out twice
// rather than as a template: a function's target attribute (which lets this file build
// without -march=native) does not reach the templates and lambdas it calls.
constexpr int64_t kFmaIters = 100'000'000;

__attribute__((target("avx512f"))) double peak_avx512() {
  __m512 acc[12];
  for (__m512& a : acc) a = _mm512_set1_ps(1e-7f);
  const __m512 x = _mm512_set1_ps(1e-7f);
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < kFmaIters; ++i)
    for (__m512& a : acc) a = _mm512_fmadd_ps(x, x, a);
  const double s = seconds_since(t0);
  float sink = 0;  // keep the chains alive
  for (__m512& a : acc) sink += _mm512_reduce_add_ps(a);
  volatile float keep = sink;
  (void)keep;
  return 2.0 * 16 * 12 * kFmaIters / s * 1e-9;
}

__attribute__((target("avx2,fma"))) double peak_avx2() {
  __m256 acc[12];
  for (__m256& a : acc) a = _mm256_set1_ps(1e-7f);
  const __m256 x = _mm256_set1_ps(1e-7f);
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < kFmaIters; ++i)
    for (__m256& a : acc) a = _mm256_fmadd_ps(x, x, a);
  const double s = seconds_since(t0);
  alignas(32) float lanes[8];
  float sink = 0;
  for (__m256& a : acc) {
    _mm256_store_ps(lanes, a);
    sink += lanes[0];
  }
  volatile float keep = sink;
  (void)keep;
  return 2.0 * 8 * 12 * kFmaIters / s * 1e-9;
}

struct GemmShape {
  const char* what;
  bool ta, tb;
  int64_t m, n, k;
};

// GFLOP/s of one shape on backend b (or the measured choice when b is null).
double rate(const GemmShape& s, const cpu::GemmBackend* b, double min_seconds, float beta) {
  const int64_t ar = s.ta ? s.k : s.m, ac = s.ta ? s.m : s.k, br = s.tb ? s.n : s.k, bc = s.tb ? s.k : s.n;
  std::vector<float> a(ar * ac, 0.01f), bm(br * bc, 0.02f), c(s.m * s.n, 0.0f);
  auto call = [&] {
    if (b) cpu::backend_gemm<float>(*b, s.ta, s.tb, s.m, s.n, s.k, 1.0f, a.data(), ac, bm.data(), bc, beta, c.data(), s.n);
    else cpu::gemm<float>(s.ta, s.tb, s.m, s.n, s.k, 1.0f, a.data(), ac, bm.data(), bc, beta, c.data(), s.n);
  };
  // Three warm-up calls (for "auto", the first measures the backends on this shape).
  const double best = bench::best_seconds_per_call(call, min_seconds, 3);
  return 2.0 * s.m * s.n * s.k / best * 1e-9;
}

// The backend the measured choice runs this shape on (decided above, on "auto"'s run).
cpu::GemmBackend choice(const GemmShape& s) {
  const int64_t ar = s.ta ? s.k : s.m, ac = s.ta ? s.m : s.k, br = s.tb ? s.n : s.k, bc = s.tb ? s.k : s.n;
  std::vector<float> a(ar * ac, 0.01f), b(br * bc, 0.02f);
  return cpu::gemm_choice<float>(s.ta, s.tb, s.m, s.n, s.k, a.data(), ac, b.data(), bc);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 128;
  double min_seconds = 0.2;
  std::string model = "mlp";
  float beta = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--batch") batch = std::atoll(argv[i + 1]);
    else if (flag == "--seconds") min_seconds = std::atof(argv[i + 1]);
    else if (flag == "--model") model = argv[i + 1];
    else if (flag == "--beta") beta = float(std::atof(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: gemm [--batch 128] [--seconds 0.2] [--model mlp|deep-mlp] [--beta 0|1]\n");
      return 2;
    }
  }
  set_num_threads(1);
  __builtin_cpu_init();
  const double p512 = __builtin_cpu_supports("avx512f") ? peak_avx512() : 0;
  const double p256 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? peak_avx2() : 0;
  const double peak = std::max(p512, p256);
  std::printf("fp32 FMA peak, one core: AVX-512 %.1f GFLOP/s, AVX2 %.1f GFLOP/s (12 independent chains)\n", p512, p256);
  if (peak == 0) {
    std::printf("no AVX2 or AVX-512 on this CPU: no peak to compare with\n");
    return 0;
  }

  const int64_t B = batch;
  const std::vector<GemmShape> mlp = {
      {"fc1 forward", false, true, B, 512, 784},     {"fc2 forward", false, true, B, 256, 512},
      {"fc3 forward", false, true, B, 10, 256},      {"fc2 grad input", false, false, B, 512, 256},
      {"fc3 grad input", false, false, B, 256, 10},  {"fc1 grad weight", true, false, 512, 784, B},
      {"fc2 grad weight", true, false, 256, 512, B}, {"fc3 grad weight", true, false, 10, 256, B},
  };
  const std::vector<GemmShape> deep = {
      {"forward", false, true, B, 1024, 1024},
      {"forward^T W@x^T", false, true, 1024, B, 1024},
      {"forward x@(W^T)", false, false, B, 1024, 1024},
      {"grad input", false, false, B, 1024, 1024},
      {"grad weight", true, false, 1024, 1024, B},
  };
  const std::vector<GemmShape>& shapes = model == "deep-mlp" ? deep : mlp;
  std::vector<const cpu::GemmBackend*> columns = {nullptr};
  for (const cpu::GemmBackend& b : cpu::kGemmBackends)
    if (cpu::backend_available<float>(b)) columns.push_back(&b);

  std::printf("\nGFLOP/s (%% of peak), one thread, %s, batch %lld, beta %g\n%-16s %2s %5s %5s %5s", model.c_str(),
              static_cast<long long>(B), double(beta), "",
              "op", "m", "n", "k");
  for (auto* b : columns) std::printf("  %14s", b ? cpu::backend_name(*b) : "auto");
  std::printf("  auto chose\n");
  std::vector<double> flops(columns.size(), 0), secs(columns.size(), 0);
  for (const GemmShape& s : shapes) {
    std::printf("%-16s %c%c %5lld %5lld %5lld", s.what, s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', static_cast<long long>(s.m),
                static_cast<long long>(s.n), static_cast<long long>(s.k));
    const double f = 2.0 * s.m * s.n * s.k * 1e-9;
    for (size_t i = 0; i < columns.size(); ++i) {
      const double r = rate(s, columns[i], min_seconds, beta);
      flops[i] += f;
      secs[i] += f / r;
      std::printf("  %6.1f (%4.0f%%)", r, 100 * r / peak);
    }
    std::printf("  %s\n", cpu::backend_name(choice(s)));
  }
  std::printf("%-16s %2s %5s %5s %5s", "all (weighted)", "", "", "", "");
  for (size_t i = 0; i < columns.size(); ++i) std::printf("  %6.1f (%4.0f%%)", flops[i] / secs[i], 100 * flops[i] / secs[i] / peak);
  const double auto_share = flops[0] / secs[0] / peak;
  std::printf("\n\nauto: %.0f%% of the peak (target >= 80%%): %s\n%s\n", 100 * auto_share, auto_share >= 0.8 ? "ok" : "MISS",
              gemm_report().c_str());
  return 0;
}
