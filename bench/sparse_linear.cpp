// Dense Linear vs SparseLinear (CSR) inference, across sparsity levels: when does
// sparsity make a layer faster?
//
// One Linear layer (default 784 -> 512, the MLP's first layer, or --in/--out), its weight
// pruned by magnitude to each sparsity level, then y = x W^T + b timed two ways on the
// same x, in the same process, interleaved:
//   dense   nn::Linear with the pruned weight (zeros and all): Eigen GEMM / GEMV
//   sparse  prune::SparseLinear built from it: CSR, only the non-zeros
// at batch 1 (a GEMV: reading W dominates) and batch 64 (a GEMM: arithmetic dominates).
// For every level and batch, `rounds` rounds each time `reps` calls of dense, then of
// sparse; the median time per call over the rounds is reported, and the ratio
// dense / sparse (> 1: sparse is faster). Break-even is the sparsity where the ratio
// crosses 1, interpolated linearly between the two levels around it.
//
//   sparse_linear [--in 784] [--out 512] [--threads 1] [--rounds 15] [--batches 1,64]
//                 [--levels 0,0.1,...] [--min-ms 20]
// prints a table per batch size (wall time, and this thread's CPU time, which is the
// steadier of the two on a shared machine with --threads 1) and one
// `break_even batch=B sparsity=S (wall) S (cpu)` line each (-1: never).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <sstream>
#include <string>
#include <vector>

#include "weft.h"

using namespace weft;

namespace {

struct Args {
  int64_t in = 784, out = 512;
  int threads = 1, rounds = 15;
  double min_ms = 20;
  std::vector<int64_t> batches{1, 64};
  std::vector<double> levels{0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99};
};

template <class T>
std::vector<T> parse_list(const char* s) {
  std::vector<T> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(static_cast<T>(std::stod(item)));
  return v;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "sparse_linear: %s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    const std::string f = argv[i];
    if (f == "--in") a.in = std::atoll(next());
    else if (f == "--out") a.out = std::atoll(next());
    else if (f == "--threads") a.threads = std::atoi(next());
    else if (f == "--rounds") a.rounds = std::atoi(next());
    else if (f == "--min-ms") a.min_ms = std::atof(next());
    else if (f == "--batches") a.batches = parse_list<int64_t>(next());
    else if (f == "--levels") a.levels = parse_list<double>(next());
    else {
      std::fprintf(stderr,
                   "usage: sparse_linear [--in N] [--out N] [--threads N] [--rounds R] [--min-ms MS]\n"
                   "                     [--batches 1,64] [--levels 0,0.5,0.9,...]\n");
      std::exit(2);
    }
  }
  return a;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double thread_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

struct Time {
  double wall, cpu;  // seconds per call
};

// Seconds per call of fn over `reps` calls, in wall time and in this thread's CPU time.
// On a shared machine the wall time includes the time the core was given to others;
// the CPU time does not, so with --threads 1 it is the steadier measure.
template <class F>
Time time_calls(F&& fn, int reps) {
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = thread_cpu_seconds();
  for (int i = 0; i < reps; ++i) fn();
  return {seconds_since(t0) / reps, (thread_cpu_seconds() - c0) / reps};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Row {
  double sparsity, dense_us, sparse_us, dense_cpu_us, sparse_cpu_us;
  double ratio() const { return dense_us / sparse_us; }
  double cpu_ratio() const { return dense_cpu_us / sparse_cpu_us; }
};

// Dense and sparse, interleaved round by round, at one sparsity and batch size.
Row measure(const Args& a, double sparsity, int64_t batch) {
  manual_seed(1);
  auto model = std::make_shared<nn::Sequential>(
      std::initializer_list<std::shared_ptr<nn::Module>>{std::make_shared<nn::Linear>(a.in, a.out)});
  if (sparsity > 0) {
    prune::Pruner pruner(*model);
    prune::magnitude(pruner, sparsity);
    pruner.make_permanent();
  }
  auto& dense = dynamic_cast<nn::Linear&>(*(*model)[0]);
  auto sparse = prune::SparseLinear::from(dense);
  autograd::NoGradGuard no_grad;
  const Tensor x = randn({batch, a.in});
  // The two must agree, or the timing means nothing.
  WEFT_CHECK(allclose(dense(x), (*sparse)(x), 1e-4, 1e-4), "sparse_linear: SparseLinear disagrees with Linear");
  auto run_dense = [&] { (void)dense(x); };
  auto run_sparse = [&] { (void)(*sparse)(x); };
  // Calls per round: enough for min_ms of the dense layer.
  const double one = time_calls(run_dense, 5).wall;
  const int reps = std::max(5, static_cast<int>(a.min_ms * 1e-3 / std::max(one, 1e-9)));
  time_calls(run_sparse, 5);
  std::vector<double> d, s, dc, sc;
  for (int r = 0; r < a.rounds; ++r) {
    const Time td = time_calls(run_dense, reps), ts = time_calls(run_sparse, reps);
    d.push_back(td.wall), s.push_back(ts.wall), dc.push_back(td.cpu), sc.push_back(ts.cpu);
  }
  return {sparsity, 1e6 * median(d), 1e6 * median(s), 1e6 * median(dc), 1e6 * median(sc)};
}

// The sparsity where dense/sparse first crosses 1, or -1 if it never does.
double break_even(const std::vector<Row>& rows, double (Row::*ratio)() const) {
  if (!rows.empty() && (rows[0].*ratio)() >= 1) return rows[0].sparsity;
  for (size_t i = 1; i < rows.size(); ++i)
    if ((rows[i].*ratio)() >= 1) {
      const double lo = (rows[i - 1].*ratio)(), hi = (rows[i].*ratio)();
      return rows[i - 1].sparsity + (1 - lo) / (hi - lo) * (rows[i].sparsity - rows[i - 1].sparsity);
    }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  set_num_threads(a.threads);
  std::printf("sparse_linear: Linear(%lld -> %lld), %d thread(s), median of %d rounds; ratio = dense / sparse\n",
              static_cast<long long>(a.in), static_cast<long long>(a.out), num_threads(), a.rounds);
  for (int64_t batch : a.batches) {
    std::printf("\nbatch %lld          wall time                     thread CPU time\n"
                "  sparsity   dense us  sparse us   ratio   dense us  sparse us   ratio\n",
                static_cast<long long>(batch));
    std::vector<Row> rows;
    for (double s : a.levels) {
      rows.push_back(measure(a, s, batch));
      const Row& r = rows.back();
      std::printf("  %7.1f%%  %9.2f  %9.2f  %6.2fx  %9.2f  %9.2f  %6.2fx\n", 100 * r.sparsity, r.dense_us,
                  r.sparse_us, r.ratio(), r.dense_cpu_us, r.sparse_cpu_us, r.cpu_ratio());
      std::fflush(stdout);
    }
    const double be = break_even(rows, &Row::ratio), be_cpu = break_even(rows, &Row::cpu_ratio);
    std::printf("break_even batch=%lld sparsity=%.3f (wall) %.3f (cpu)\n", static_cast<long long>(batch), be, be_cpu);
  }
  return 0;
}
