// bfloat16 GEMMs on the CPU: weft's way against oneDNN's bf16 matmul, one thread.
//
// Issue 20 asks for the CPU's 16-bit GEMM to be "convert and use the float32 kernels,
// or native bf16 dot products where the CPU has AVX-512 BF16, decided by a benchmark".
// This is the benchmark. For each product of one training step of the sample MLP
// (784-512-256-10) and of the CNN's two Linear layers (3136-128-10), batch 128:
//
//   float32     raw::matmul on float32 tensors: weft's measured-per-shape float32 GEMM
//   bf16 weft   raw::matmul on bfloat16 tensors: HalfBackend widens both operands to
//               float32 (vectorised), runs the float32 GEMM and rounds the result once
//   bf16 oneDNN oneDNN's matmul primitive on the same bfloat16 operands, bfloat16 out,
//               float32 accumulation: native VDPBF16PS dot products on a CPU with
//               AVX-512 BF16 (or AMX), emulated with float32 FMAs on one without
//
// Times are per product, best of five rounds; weft's columns include allocating the
// result, oneDNN's writes a preallocated one. The last lines say which bf16 way is
// faster on this CPU overall (flop-weighted) and what oneDNN's implementation was.
//
//   build/bench/half_gemm [--seconds 0.2] [--batch 128]
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "tensor/cpu/gemm_backends.h"
#include "tensor/raw.h"
#include "timing.h"
#include "weft.h"

using namespace weft;

namespace {

// C (m, n) = op(A) op(B): A stored (m, k) or, transposed, (k, m); B (k, n) or (n, k).
struct Product {
  const char* what;
  bool ta, tb;
  int64_t m, n, k;
};

// op(t) for a stored operand: a transposed view when `trans` (weft's GEMMs take it as is).
Tensor op(const Tensor& t, bool trans) { return trans ? t.t() : t; }

// oneDNN's matmul of bf16 operands, strided like the views above, into a bf16 result.
struct OneDnnMatmul {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  dnnl::matmul prim;
  dnnl::memory a, b, c;
  std::string impl;

  OneDnnMatmul(const Product& p, const Tensor& a16, const Tensor& b16, Tensor& c16) {
    using dt = dnnl::memory::data_type;
    // Row-major (rows, cols) has strides (cols, 1); its transpose view (cols, rows) has (1, cols).
    const dnnl::memory::desc ad({p.m, p.k}, dt::bf16, p.ta ? dnnl::memory::dims{1, p.m} : dnnl::memory::dims{p.k, 1});
    const dnnl::memory::desc bd({p.k, p.n}, dt::bf16, p.tb ? dnnl::memory::dims{1, p.k} : dnnl::memory::dims{p.n, 1});
    const dnnl::memory::desc cd({p.m, p.n}, dt::bf16, dnnl::memory::dims{p.n, 1});
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(ad, bd, cd), eng);
    impl = pd.impl_info_str();
    prim = dnnl::matmul(pd);
    a = dnnl::memory(ad, eng, a16.raw_data());
    b = dnnl::memory(bd, eng, b16.raw_data());
    c = dnnl::memory(cd, eng, c16.raw_data());
  }
  void run() {
    prim.execute(strm, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    strm.wait();
  }
};

// Largest |x - y| / (1 + |y|) between two results (both read as float32).
double max_rel_diff(const Tensor& x, const Tensor& y) {
  const std::vector<float> a = raw::to_dtype(x, kFloat32).contiguous().to_vector<float>();
  const std::vector<float> b = raw::to_dtype(y, kFloat32).contiguous().to_vector<float>();
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a[i]) - b[i]) / (1 + std::abs(b[i])));
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  double min_seconds = 0.2;
  int64_t B = 128;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--seconds") min_seconds = std::atof(argv[i + 1]);
    else if (flag == "--batch") B = std::atoll(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: half_gemm [--seconds 0.2] [--batch 128]\n");
      return 2;
    }
  }
  set_num_threads(1);
  omp_set_num_threads(1);  // oneDNN's OpenMP runtime: one thread, like weft's column
  const std::vector<Product> products = {
      {"mlp fc1 forward", false, true, B, 512, 784},     {"mlp fc2 forward", false, true, B, 256, 512},
      {"mlp fc3 forward", false, true, B, 10, 256},      {"mlp fc2 grad input", false, false, B, 512, 256},
      {"mlp fc3 grad input", false, false, B, 256, 10},  {"mlp fc1 grad weight", true, false, 512, 784, B},
      {"mlp fc2 grad weight", true, false, 256, 512, B}, {"mlp fc3 grad weight", true, false, 10, 256, B},
      {"cnn fc1 forward", false, true, B, 128, 3136},    {"cnn fc1 grad weight", true, false, 128, 3136, B},
  };
  std::printf("one thread; us per product (GFLOP/s); bf16 columns against weft's float32\n");
  std::printf("%-20s %2s %5s %5s %5s %16s %16s %16s %9s %9s\n", "product", "op", "m", "n", "k", "float32",
              "bf16 weft", "bf16 oneDNN", "oneDNN/weft", "rel diff");
  double flops = 0, t32 = 0, tweft = 0, tdnnl = 0;
  std::string impl;
  for (const Product& p : products) {
    Generator gen(7);
    const Tensor a32 = randn(p.ta ? Shape{p.k, p.m} : Shape{p.m, p.k}, {}, gen);
    const Tensor b32 = randn(p.tb ? Shape{p.n, p.k} : Shape{p.k, p.n}, {}, gen);
    const Tensor a16 = raw::to_dtype(a32, kBFloat16), b16 = raw::to_dtype(b32, kBFloat16);
    Tensor c16 = empty({p.m, p.n}, {.dtype = kBFloat16});
    std::optional<OneDnnMatmul> made;
    try {
      made.emplace(p, a16, b16, c16);
    } catch (const dnnl::error& e) {  // a CPU below AVX-512: oneDNN has no bf16 matmul for it
      std::printf("oneDNN cannot run a bf16 matmul on this CPU (%s): convert-and-float32 is the only way here\n",
                  e.what());
      return 0;
    }
    OneDnnMatmul& dnnl_mm = *made;
    impl = dnnl_mm.impl;
    const double s32 = bench::best_seconds_per_call([&] { raw::matmul(op(a32, p.ta), op(b32, p.tb)); }, min_seconds);
    const double sweft = bench::best_seconds_per_call([&] { raw::matmul(op(a16, p.ta), op(b16, p.tb)); }, min_seconds);
    const double sdnnl = bench::best_seconds_per_call([&] { dnnl_mm.run(); }, min_seconds);
    const double diff = max_rel_diff(c16, raw::matmul(op(a16, p.ta), op(b16, p.tb)));
    const double f = 2.0 * double(p.m * p.n * p.k);
    flops += f, t32 += s32, tweft += sweft, tdnnl += sdnnl;
    std::printf("%-20s %c%c %5lld %5lld %5lld %8.1f (%5.1f) %8.1f (%5.1f) %8.1f (%5.1f) %8.2fx %9.1e\n", p.what,
                p.ta ? 'T' : 'N', p.tb ? 'T' : 'N', static_cast<long long>(p.m), static_cast<long long>(p.n),
                static_cast<long long>(p.k), s32 * 1e6, f / s32 * 1e-9, sweft * 1e6, f / sweft * 1e-9, sdnnl * 1e6,
                f / sdnnl * 1e-9, sdnnl / sweft, diff);
  }
  std::printf("%-20s %2s %5s %5s %5s %8.1f (%5.1f) %8.1f (%5.1f) %8.1f (%5.1f) %8.2fx\n", "all (weighted)", "", "",
              "", "", t32 * 1e6, flops / t32 * 1e-9, tweft * 1e6, flops / tweft * 1e-9, tdnnl * 1e6,
              flops / tdnnl * 1e-9, tdnnl / tweft);
  std::printf("\n%s; its bf16 matmul implementation: '%s'\n", cpu::backend_version(cpu::GemmBackend::onednn).c_str(),
              impl.c_str());
  std::printf("bf16 on this CPU: %s is faster overall (%.2fx); bf16 weft costs %.2fx float32's time\n",
              tdnnl < tweft ? "oneDNN's native matmul" : "weft's convert-and-float32 path",
              tdnnl < tweft ? tweft / tdnnl : tdnnl / tweft, tweft / t32);
  return 0;
}
