// All-reduce bus bandwidth: weft's backends and hand-written algorithms next to Open MPI's
// own MPI_Allreduce, in one run. Run under mpirun (bench/run_collectives.sh does):
//
//   mpirun -np 2 build/bench/collectives [--min-mib 1] [--max-mib 64] [--rounds 3]
//                                        [--seconds 0.25] [--threads-ranks 2]
//
// For each message size (float32, powers of two from min to max MiB) and each round,
// one after another so that a burst of load on a shared machine hits all alike:
//   MPI_Allreduce      Open MPI's tuned all-reduce, called directly (the reference)
//   weft mpi           MpiCommunicator::allreduce (handshake + MPI_Allreduce)
//   ring/mpi           parallel::ring_allreduce over MpiCommunicator's isend/irecv
//   naive/mpi          parallel::naive_allreduce over the same
//   threads            ThreadsCommunicator::allreduce, `threads-ranks` threads in rank 0's
//                      process (the other MPI processes sleep meanwhile, so the cores
//                      are the same ones MPI had)
//   ring/threads       parallel::ring_allreduce over the threads backend's send/recv
// Each measurement: 2 warm-up calls, then enough calls for ~`seconds`; the time per call
// is the slowest rank's. The median over rounds (and, below it, the best round) is
// reported as bus bandwidth, the definition of nccl-tests: algbw = bytes / time,
// busbw = algbw * 2(n-1)/n -- the speed every link of a ring must sustain, comparable
// across world sizes.
#define OMPI_SKIP_MPICXX 1
#include <mpi.h>
#include <unistd.h>

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "parallel/algorithms/naive_allreduce.h"
#include "parallel/algorithms/ring_allreduce.h"
#include "parallel/comm/mpi_communicator.h"
#include "parallel/comm/threads_communicator.h"
#include "weft.h"

using namespace weft;
using namespace weft::parallel;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  int min_mib = 1, max_mib = 64, rounds = 3, threads_ranks = 2;
  double seconds = 0.25;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--min-mib") o.min_mib = std::atoi(argv[i + 1]);
    else if (k == "--max-mib") o.max_mib = std::atoi(argv[i + 1]);
    else if (k == "--rounds") o.rounds = std::atoi(argv[i + 1]);
    else if (k == "--seconds") o.seconds = std::atof(argv[i + 1]);
    else if (k == "--threads-ranks") o.threads_ranks = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return o;
}

double secs_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Seconds per call of op() over the MPI job: warm-up, calibrate the count on rank 0,
// then time `iters` calls between barriers; the slowest rank's time.
double time_mpi(const std::function<void()>& op, double seconds) {
  op();
  op();
  MPI_Barrier(MPI_COMM_WORLD);
  auto t0 = Clock::now();
  op();
  double one = secs_since(t0);
  MPI_Allreduce(MPI_IN_PLACE, &one, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  const int iters = std::clamp(int(seconds / std::max(one, 1e-6)), 3, 10000);
  MPI_Barrier(MPI_COMM_WORLD);
  t0 = Clock::now();
  for (int i = 0; i < iters; ++i) op();
  double t = secs_since(t0) / iters;
  MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return t;
}

// The same on a fresh thread group of n ranks; op(comm, tensor) is one all-reduce.
double time_threads(int n, int64_t numel, const std::function<void(Communicator&, const Tensor&)>& op,
                    double seconds) {
  std::vector<double> per_rank(n);
  run_ranks(n, [&](Communicator& c) {
    Tensor t = zeros({numel});
    op(c, t);
    op(c, t);
    Tensor iters = zeros({1}, {.dtype = kInt64});
    c.barrier();
    auto t0 = Clock::now();
    op(c, t);
    if (c.rank() == 0) iters.data<int64_t>()[0] = std::clamp<int64_t>(int64_t(seconds / std::max(secs_since(t0), 1e-6)), 3, 10000);
    c.broadcast(iters, 0);
    const int64_t k = iters.data<int64_t>()[0];
    c.barrier();
    t0 = Clock::now();
    for (int64_t i = 0; i < k; ++i) op(c, t);
    per_rank[c.rank()] = secs_since(t0) / k;
  });
  return *std::max_element(per_rank.begin(), per_rank.end());
}

// Rank 0 runs f() alone while the other ranks sleep (polling every 2 ms for "done", so
// they leave the cores to rank 0's threads). mpirun binds each process to one core
// (--report-bindings shows it), and threads inherit their creator's binding, so for the
// time of f() rank 0 lets itself run on every core: the threads backend's ranks would
// otherwise all share rank 0's one core.
double on_rank0_alone(int rank, int size, const std::function<double()>& f) {
  double result = 0;
  if (rank == 0) {
    cpu_set_t bound, all;
    sched_getaffinity(0, sizeof bound, &bound);
    CPU_ZERO(&all);
    for (int c = 0; c < CPU_SETSIZE; ++c) CPU_SET(c, &all);
    sched_setaffinity(0, sizeof all, &all);
    result = f();
    sched_setaffinity(0, sizeof bound, &bound);
    for (int q = 1; q < size; ++q) MPI_Send(&result, 1, MPI_DOUBLE, q, 99, MPI_COMM_WORLD);
  } else {
    MPI_Request req;
    MPI_Irecv(&result, 1, MPI_DOUBLE, 0, 99, MPI_COMM_WORLD, &req);
    for (int done = 0; !done;) {
      MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (!done) usleep(2000);
    }
  }
  return result;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  const Options o = parse(argc, argv);
  auto comm = MpiCommunicator::world();
  const int rank = comm->rank(), n = comm->size();
  const int tn = o.threads_ranks;

  const char* names[] = {"MPI_Allreduce", "weft mpi", "ring/mpi", "naive/mpi", "threads", "ring/threads"};
  constexpr int kMethods = 6;
  if (rank == 0) {
    std::printf("all-reduce bus bandwidth, GB/s (busbw = bytes/time * 2(n-1)/n; median of %d rounds, then the best)\n",
                o.rounds);
    std::printf("MPI: %d processes; threads: %d threads in one process; float32, sum\n\n", n, tn);
    std::printf("%8s", "size");
    for (const char* m : names) std::printf(" %13s", m);
    std::printf(" %15s %16s\n", "threads/MPI", "ring_mpi/MPI");
  }
  for (int mib = o.min_mib; mib <= o.max_mib; mib *= 2) {
    const int64_t numel = int64_t(mib) * (1 << 20) / 4;
    const double bytes = double(numel) * 4;
    Tensor t = zeros({numel});
    std::vector<std::vector<double>> times(kMethods);
    for (int round = 0; round < o.rounds; ++round) {
      float* data = t.data<float>();
      times[0].push_back(time_mpi([&] { MPI_Allreduce(MPI_IN_PLACE, data, int(numel), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); }, o.seconds));
      times[1].push_back(time_mpi([&] { comm->allreduce(t); }, o.seconds));
      times[2].push_back(time_mpi([&] { ring_allreduce(*comm, t); }, o.seconds));
      times[3].push_back(time_mpi([&] { naive_allreduce(*comm, t); }, o.seconds));
      times[4].push_back(on_rank0_alone(rank, n, [&] {
        return time_threads(tn, numel, [](Communicator& c, const Tensor& x) { c.allreduce(x); }, o.seconds);
      }));
      times[5].push_back(on_rank0_alone(rank, n, [&] {
        return time_threads(tn, numel, [](Communicator& c, const Tensor& x) { ring_allreduce(c, x); }, o.seconds);
      }));
    }
    if (rank != 0) continue;
    // Median, and best (fastest round) on a second line: on a shared machine the best
    // round of each is the one least disturbed by other programs.
    for (bool best : {false, true}) {
      double bus[kMethods];
      for (int m = 0; m < kMethods; ++m) {
        const int world = m >= 4 ? tn : n;
        const double t = best ? *std::min_element(times[m].begin(), times[m].end()) : median(times[m]);
        bus[m] = bytes / t * 2.0 * (world - 1) / world / 1e9;
      }
      std::printf(best ? "    best" : "%4d MiB", mib);
      for (double b : bus) std::printf(" %13.2f", b);
      std::printf(" %14.2fx %15.2fx\n", bus[4] / bus[0], bus[2] / bus[0]);
    }
    std::fflush(stdout);
  }
  comm.reset();
  MPI_Finalize();
  return 0;
}
