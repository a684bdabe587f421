// The user-facing side of the GEMM choice (kernels.h): names, the one-line report and
// the decision table over tensor/cpu/gemm.h.
#include "kernels.h"

#include <cstdio>

#include "cpu/gemm.h"
#include "error.h"

namespace weft {

namespace {

std::string choices() {
  std::string s = "auto";
  for (const std::string& n : gemm_backends_available()) s += ", " + n;
  return s;
}

}  // namespace

void set_gemm_backend(const std::string& name) {
  if (name == "auto") return cpu::force_gemm_backend(std::nullopt);
  const auto b = cpu::backend_named(name);
  WEFT_CHECK(b, "set_gemm_backend(\"", name, "\"): unknown GEMM backend (choose from ", choices(), ")");
  WEFT_CHECK(cpu::backend_in_build(*b), "set_gemm_backend(\"", name, "\"): this build of weft has no ", name,
             " (choose from ", choices(), ")");
  cpu::force_gemm_backend(*b);
}

std::string gemm_backend_setting() {
  const auto forced = cpu::forced_gemm_backend();
  return forced ? cpu::backend_name(*forced) : "auto";
}

std::vector<std::string> gemm_backends_available() {
  std::vector<std::string> out;
  for (cpu::GemmBackend b : cpu::kGemmBackends)
    if (cpu::backend_in_build(b)) out.push_back(cpu::backend_name(b));
  return out;
}

std::string gemm_report() {
  std::string line;
  if (const auto forced = cpu::forced_gemm_backend()) {
    line = "gemm: " + cpu::backend_version(*forced) + " (forced: WEFT_GEMM or set_gemm_backend)";
  } else {
    int wins[3] = {0, 0, 0};
    for (const cpu::GemmDecision& d : cpu::gemm_decisions()) ++wins[static_cast<int>(d.chosen)];
    char cost[64];
    std::snprintf(cost, sizeof cost, " (measuring took %.0f ms + %.0f ms of library start-up)",
                  (cpu::gemm_measuring_seconds() - cpu::gemm_startup_seconds()) * 1e3, cpu::gemm_startup_seconds() * 1e3);
    line = "gemm: measured per shape" + std::string(cost) + " --";
    const char* sep = " ";
    for (cpu::GemmBackend b : cpu::kGemmBackends) {
      if (!cpu::backend_in_build(b)) continue;
      line += detail::str(sep, cpu::backend_version(b), " ", wins[static_cast<int>(b)], " classes");
      sep = ", ";
    }
  }
  if (const std::string warn = cpu::openblas_fallback(); !warn.empty() && cpu::backend_in_build(cpu::GemmBackend::openblas))
    line += "; warning: " + warn;
  return line;
}

namespace {
// The column header of backend b: "onednn us" etc.
std::string column(cpu::GemmBackend b) { return std::string(cpu::backend_name(b)) + " us"; }
}  // namespace

std::string gemm_decision_table() {
  std::string out = "dtype    op       m       n       k";
  for (cpu::GemmBackend b : cpu::kGemmBackends)
    if (cpu::backend_in_build(b)) out += "  " + column(b);
  out += "  chosen\n";
  for (const cpu::GemmDecision& d : cpu::gemm_decisions()) {
    char cell[96];
    std::snprintf(cell, sizeof cell, "%-7s  %c%c  %6lld  %6lld  %6lld", d.is_double ? "float64" : "float32",
                  d.trans_a ? 'T' : 'N', d.trans_b ? 'T' : 'N', static_cast<long long>(d.m),
                  static_cast<long long>(d.n), static_cast<long long>(d.k));
    out += cell;
    for (cpu::GemmBackend b : cpu::kGemmBackends) {
      if (!cpu::backend_in_build(b)) continue;
      const double s = d.seconds[static_cast<int>(b)];
      const int width = static_cast<int>(column(b).size());
      if (s > 0) std::snprintf(cell, sizeof cell, "  %*.1f", width, s * 1e6);
      else std::snprintf(cell, sizeof cell, "  %*s", width, "-");
      out += cell;
    }
    out += detail::str("  ", cpu::backend_name(d.chosen), "\n");
  }
  char total[128];
  std::snprintf(total, sizeof total, "measuring took %.1f ms in all, %.1f ms of it the libraries' start-up\n",
                cpu::gemm_measuring_seconds() * 1e3, cpu::gemm_startup_seconds() * 1e3);
  return out + total;
}

}  // namespace weft
