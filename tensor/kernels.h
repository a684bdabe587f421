// Which library runs weft's CPU matrix multiplies (matmul, linear, convolutions), and
// how it was chosen. tensor/cpu/gemm.h tells how the choice is made: by timing every
// candidate (Eigen, OpenBLAS, oneDNN, those in the build) on the first call of each
// shape class and keeping the fastest.
#pragma once

#include <string>
#include <vector>

namespace weft {

// "auto" (the default: measured per shape class), or "eigen", "openblas" or "onednn" to
// run every call on that one -- e.g. for results that agree bit for bit across processes.
// WEFT_GEMM in the environment gives the starting value. An unknown name, or a backend
// this build lacks, throws weft::Error naming the choices.
void set_gemm_backend(const std::string& name);
std::string gemm_backend_setting();

// The backends in this build that can run here, by the names set_gemm_backend takes.
std::vector<std::string> gemm_backends_available();

// One line for a log: the candidates with their versions and kernels, how many shape
// classes each won so far (or the forced one), and a warning when OpenBLAS runs generic
// kernels on a CPU with AVX2 or AVX-512. E.g.
//   gemm: measured per shape (measuring took 25 ms + 30 ms of library start-up) -- Eigen
//   3.4.0 1 classes, OpenBLAS 0.3.21 (Cooperlake kernels) 2 classes, oneDNN 2.6.3
//   (avx512_core_bf16 JIT) 7 classes
std::string gemm_report();

// A table of the shape classes measured so far: the shape that was timed, each
// candidate's time in microseconds, and the choice; then the time measuring took.
std::string gemm_decision_table();

}  // namespace weft
