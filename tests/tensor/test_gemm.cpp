// The CPU GEMM's backends (tensor/cpu/gemm_backends.h) and the choice between them
// (tensor/cpu/gemm.h, tensor/kernels.h): every backend is right to within rounding on
// every transpose and odd shape; the measured choice is made, recorded and honoured; a
// forced one is honoured; OpenBLAS's generic-kernel fallback is detected and loses.
#include <atomic>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tensor/cpu/gemm.h"
#include "weft.h"

using namespace weft;
using cpu::GemmBackend;

namespace {

struct Case {
  bool ta, tb;
  int64_t m, n, k;
};

// Operands stored with row strides wider than the matrix, as strided views give them.
template <class T>
struct Operands {
  int64_t lda, ldb, ldc;
  std::vector<T> a, b, c0;
  explicit Operands(const Case& s) {
    const int64_t ar = s.ta ? s.k : s.m, ac = s.ta ? s.m : s.k;  // A as stored
    const int64_t br = s.tb ? s.n : s.k, bc = s.tb ? s.k : s.n;
    lda = ac + 3, ldb = bc + 1, ldc = s.n + 2;
    a.resize(ar * lda), b.resize(br * ldb), c0.resize(s.m * ldc);
    uint64_t state = 12345;
    auto next = [&] {  // values in [-1, 1), reproducible
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      return static_cast<T>(static_cast<double>(state >> 11) / 4503599627370496.0 - 1.0);
    };
    for (T& v : a) v = next();
    for (T& v : b) v = next();
    for (T& v : c0) v = next();
  }
  T at_a(const Case& s, int64_t i, int64_t p) const { return s.ta ? a[p * lda + i] : a[i * lda + p]; }
  T at_b(const Case& s, int64_t p, int64_t j) const { return s.tb ? b[j * ldb + p] : b[p * ldb + j]; }
};

// Runs backend `which` on the case and checks every entry against a long-double sum,
// within the worst-case rounding bound of a k-term dot product in T.
template <class T>
void check_backend(GemmBackend which, const Case& s) {
  Operands<T> o(s);
  const T alpha = T(0.75), beta = T(-0.5);
  std::vector<T> c = o.c0;
  cpu::backend_gemm<T>(which, s.ta, s.tb, s.m, s.n, s.k, alpha, o.a.data(), o.lda, o.b.data(), o.ldb, beta, c.data(),
                       o.ldc);
  const double eps = std::numeric_limits<T>::epsilon();
  int64_t bad = 0;
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j) {
      long double ref = 0, mag = 0;
      for (int64_t p = 0; p < s.k; ++p) {
        const long double prod = static_cast<long double>(o.at_a(s, i, p)) * o.at_b(s, p, j);
        ref += prod;
        mag += std::fabs(prod);
      }
      const long double c0 = o.c0[i * o.ldc + j];
      const long double want = alpha * ref + beta * c0;
      const double bound = (s.k + 2) * eps * static_cast<double>(std::fabs(alpha) * mag + std::fabs(beta * c0)) + 1e-30;
      if (std::fabs(static_cast<long double>(c[i * o.ldc + j]) - want) > bound) ++bad;
    }
  INFO(cpu::backend_version(which) << (sizeof(T) == 8 ? " float64" : " float32") << " ta=" << s.ta << " tb=" << s.tb
                                   << " m=" << s.m << " n=" << s.n << " k=" << s.k);
  CHECK(bad == 0);
  // The padding between rows of C is left alone.
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = s.n; j < o.ldc; ++j) CHECK(c[i * o.ldc + j] == o.c0[i * o.ldc + j]);
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {37, 23, 131}, {130, 10, 257},
                             {5, 300, 17}, {64, 64, 64}})
        out.push_back({ta, tb, m, n, k});
  return out;
}

// Puts the setting back when a test case ends, passed or failed.
struct RestoreSetting {
  std::string before = gemm_backend_setting();
  ~RestoreSetting() { set_gemm_backend(before); }
};

int64_t calls_on(GemmBackend b) { return cpu::gemm_calls()[static_cast<int>(b)]; }

}  // namespace

TEST_CASE("every GEMM backend gives the product within floating-point rounding", "[gemm]") {
  int ran = 0;
  for (GemmBackend b : cpu::kGemmBackends) {
    for (const Case& s : cases()) {
      if (cpu::backend_available<float>(b)) check_backend<float>(b, s), ++ran;
      if (cpu::backend_available<double>(b)) check_backend<double>(b, s), ++ran;
    }
  }
  CHECK(ran >= 2 * static_cast<int>(cases().size()));  // Eigen, in float and double, at least
  if (gemm_backends_available().size() == 1) WARN("only Eigen in this build: no second backend to compare");
}

TEST_CASE("every GEMM backend ignores C's old values when beta = 0; gemm ignores A and B when alpha = 0", "[gemm]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (GemmBackend b : cpu::kGemmBackends) {
    if (!cpu::backend_available<float>(b)) continue;
    INFO(cpu::backend_version(b));
    std::vector<float> a(6 * 5, 1.0f), bm(5 * 4, 2.0f), c(6 * 4, nan);
    cpu::backend_gemm<float>(b, false, false, 6, 4, 5, 1.0f, a.data(), 5, bm.data(), 4, 0.0f, c.data(), 4);
    for (float v : c) CHECK(v == 10.0f);
  }
  // alpha = 0: gemm itself scales C by beta and reads neither A nor B, on every backend
  // (as the BLAS standard says; OpenBLAS 0.3.21 alone would let a NaN in A through).
  RestoreSetting restore;
  for (const std::string& name : gemm_backends_available()) {
    set_gemm_backend(name);
    INFO(name);
    std::vector<float> a(6 * 5, nan), bm(5 * 4, 2.0f), c(6 * 4, 10.0f);
    cpu::gemm<float>(false, false, 6, 4, 5, 0.0f, a.data(), 5, bm.data(), 4, 0.5f, c.data(), 4);
    for (float v : c) CHECK(v == 5.0f);
  }
}

TEST_CASE("the backends agree with each other to within float32 rounding on a layer's product", "[gemm]") {
  const int64_t m = 128, n = 96, k = 784;
  Operands<float> o(Case{false, true, m, n, k});
  std::vector<std::vector<float>> results;
  for (GemmBackend b : cpu::kGemmBackends) {
    if (!cpu::backend_available<float>(b)) continue;
    std::vector<float> c(m * o.ldc);
    cpu::backend_gemm<float>(b, false, true, m, n, k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.0f, c.data(), o.ldc);
    results.push_back(std::move(c));
  }
  for (size_t r = 1; r < results.size(); ++r)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        REQUIRE(results[r][i * o.ldc + j] == Approx(results[0][i * o.ldc + j]).margin(2 * k * 1.2e-7));
}

TEST_CASE("the GEMM backend is chosen by measurement per shape class and honoured", "[gemm]") {
  RestoreSetting restore;
  set_gemm_backend("auto");
  cpu::reset_gemm_decisions();
  const int64_t n = 192;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  const auto before = cpu::gemm_calls();
  cpu::gemm<float>(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  CHECK(c[5] == 0.5f * 0.25f * n);

  // The class was measured: each candidate was timed, and the fastest kept.
  const auto decisions = cpu::gemm_decisions();
  REQUIRE(decisions.size() == 1);
  const cpu::GemmDecision& d = decisions[0];
  CHECK((!d.is_double && !d.trans_a && d.trans_b && d.m == n && d.n == n && d.k == n));
  for (GemmBackend x : cpu::kGemmBackends) {
    const double s = d.seconds[static_cast<int>(x)];
    if (!cpu::backend_available<float>(x)) CHECK(s == 0);
    else if (gemm_backends_available().size() > 1) CHECK(s > 0);
  }
  for (GemmBackend x : cpu::kGemmBackends)
    if (d.seconds[static_cast<int>(x)] > 0) CHECK(d.seconds[static_cast<int>(d.chosen)] <= d.seconds[static_cast<int>(x)]);

  // The call ran on the chosen backend, and so do later calls of the class, on any
  // thread, including a shape of the same class (m 192 -> 200: the same power of two).
  CHECK(cpu::gemm_calls()[static_cast<int>(d.chosen)] == before[static_cast<int>(d.chosen)] + 1);
  const int64_t chosen_before = calls_on(d.chosen);
  std::thread other([&] { cpu::gemm<float>(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n); });
  other.join();
  std::vector<float> a200(200 * n, 0.5f), c2(200 * n);
  cpu::gemm<float>(false, true, 200, n, n, 1.0f, a200.data(), n, b.data(), n, 0.0f, c2.data(), n);
  CHECK(c2[199 * n + 7] == 0.5f * 0.25f * n);
  CHECK(calls_on(d.chosen) == chosen_before + 2);
  CHECK(cpu::gemm_decisions().size() == 1);
  CHECK(cpu::gemm_choice<float>(false, true, n, n, n, a.data(), n, b.data(), n) == d.chosen);

  // A different class (other transposes) gets its own decision.
  cpu::gemm<float>(true, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  CHECK(cpu::gemm_decisions().size() == 2);
  const std::string table = gemm_decision_table();
  CHECK(table.find("float32  NT     192     192     192") != std::string::npos);
  CHECK(gemm_report().find("measured per shape") != std::string::npos);
}

TEST_CASE("threads meeting a new shape class together wait for one measurement", "[gemm]") {
  RestoreSetting restore;
  set_gemm_backend("auto");
  cpu::reset_gemm_decisions();
  const int64_t n = 100;
  std::vector<float> a(n * n, 1.0f), b(n * n, 2.0f);
  const auto before = cpu::gemm_calls();
  const int64_t measured_before = cpu::gemm_measurements();
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      std::vector<float> c(n * n);
      ready.fetch_add(1);
      while (ready.load() < 4) std::this_thread::yield();  // all four start together
      for (int r = 0; r < 5; ++r) cpu::gemm<float>(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    });
  for (auto& t : threads) t.join();
  REQUIRE(cpu::gemm_decisions().size() == 1);
  if (gemm_backends_available().size() > 1) CHECK(cpu::gemm_measurements() == measured_before + 1);
  const GemmBackend chosen = cpu::gemm_decisions()[0].chosen;
  CHECK(calls_on(chosen) - before[static_cast<int>(chosen)] == 20);  // every call, on one backend
}

TEST_CASE("a forced GEMM backend runs every call; bad names are errors naming the choices", "[gemm]") {
  RestoreSetting restore;
  std::vector<float> a(64 * 64, 1.0f), c(64 * 64);
  std::vector<double> ad(64 * 64, 1.0), cd(64 * 64);
  for (const std::string& name : gemm_backends_available()) {
    set_gemm_backend(name);
    CHECK(gemm_backend_setting() == name);
    const GemmBackend b = *cpu::backend_named(name);
    const int64_t before = calls_on(b);
    cpu::gemm<float>(false, false, 64, 64, 64, 1.0f, a.data(), 64, a.data(), 64, 0.0f, c.data(), 64);
    cpu::gemm<float>(true, true, 33, 64, 17, 1.0f, a.data(), 64, a.data(), 64, 0.0f, c.data(), 64);
    CHECK(calls_on(b) == before + 2);
    CHECK(c[0] == 17.0f);
    CHECK(gemm_report().find("forced") != std::string::npos);
    // A double call on a float-only backend (oneDNN) is measured instead, and still right.
    cpu::gemm<double>(false, false, 64, 64, 64, 1.0, ad.data(), 64, ad.data(), 64, 0.0, cd.data(), 64);
    CHECK(cd[0] == 64.0);
  }
  set_gemm_backend("auto");
  CHECK(gemm_backend_setting() == "auto");
  CHECK_THROWS_WITH(set_gemm_backend("mkl"), Catch::Contains("unknown GEMM backend") && Catch::Contains("eigen"));
  for (GemmBackend x : cpu::kGemmBackends)
    if (!cpu::backend_available<float>(x) && !cpu::backend_available<double>(x))
      CHECK_THROWS_WITH(set_gemm_backend(cpu::backend_name(x)), Catch::Contains("has no"));
}

#ifdef WEFT_GEMM_PROBE
namespace {
// Runs the probe with `env` in front and returns its `key: value` lines as a map.
std::map<std::string, std::string> run_probe(const std::string& env) {
  const std::string cmd = env + " '" WEFT_GEMM_PROBE "'";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::map<std::string, std::string> out;
  char line[4096];
  while (std::fgets(line, sizeof line, p)) {
    std::string s(line);
    if (!s.empty() && s.back() == '\n') s.pop_back();
    if (const auto colon = s.find(": "); colon != std::string::npos) out[s.substr(0, colon)] = s.substr(colon + 2);
  }
  const int status = pclose(p);
  INFO(cmd);
  CHECK(status == 0);
  return out;
}
}  // namespace

TEST_CASE("OpenBLAS's generic kernels (OPENBLAS_CORETYPE=Prescott) are detected and not chosen", "[gemm]") {
  if (!std::filesystem::exists(WEFT_GEMM_PROBE)) {
    WARN("SKIP: " WEFT_GEMM_PROBE " is not built (ninja tests/gemm_probe)");
    return;
  }
  const auto normal = run_probe("env -u OPENBLAS_CORETYPE WEFT_GEMM=auto");
  const auto prescott = run_probe("env OPENBLAS_CORETYPE=Prescott WEFT_GEMM=auto");
  REQUIRE(normal.count("choice"));
  REQUIRE(prescott.count("choice"));
  if (prescott.at("openblas") == "none") {
    WARN("this build has no OpenBLAS: nothing to fall back");
    return;
  }
  INFO("default: " << normal.at("report") << "\nPrescott: " << prescott.at("report"));
  CHECK(prescott.at("openblas").find("Prescott") != std::string::npos);
  if (prescott.at("cpu_avx2") != "1") {
    WARN("this CPU has no AVX2: Prescott's kernels are not a fallback here");
    return;
  }
  CHECK(prescott.at("fallback").find("generic Prescott kernels") != std::string::npos);
  CHECK(prescott.at("report").find("warning: OpenBLAS runs its generic Prescott kernels") != std::string::npos);
  // SSE3 kernels against AVX2/AVX-512 ones (oneDNN's, or Eigen's when weft is compiled
  // for this CPU): measured, they lose by 2x or more, far beyond timing noise.
  if (prescott.at("fast_rival") == "1") CHECK(prescott.at("choice") != "openblas");
  else WARN("no AVX2 rival to OpenBLAS in this build (no oneDNN, Eigen without -march=native)");
  if (normal.at("fallback") != "none") WARN("OpenBLAS falls back without OPENBLAS_CORETYPE too: " << normal.at("fallback"));
}
#endif
