// Breaks an MPI job on purpose, one way per run, and prints what each surviving rank
// was told. tests/parallel/test_mpi_faults.cpp runs it under mpirun and reads the lines.
//
//   mpirun --mca orte_enable_recovery 1 -np 3 mpi_faults killed|stall|stall-polled|leave
//
//   killed        the last rank dies (SIGKILL) after allreduce #0; the others call
//                 allreduce #1 and must hear "rank 2 did not arrive"
//   stall         arrival checks off, blocking collectives: rank 1 never calls
//                 allreduce #0, so the others are inside MPI_Allreduce's data phase
//                 and must be released at the timeout
//   stall-polled  the same with polled collectives
//   leave         rank 1 cannot go on (comm->leave); the others' allreduce #0 must fail
//                 at once naming it and the reason, well before the timeout
//
// Each surviving rank prints "rank R: <error>" and the seconds it waited.
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "parallel/comm/mpi_communicator.h"
#include "weft.h"

using namespace weft;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: mpi_faults killed|stall|stall-polled|leave\n");
    return 2;
  }
  const std::string how = argv[1];
  auto comm = parallel::MpiCommunicator::world();
  const int rank = comm->rank(), last = comm->size() - 1;
  comm->set_timeout(parallel::Timeout(how == "leave" ? 20'000 : 3'000));
  if (how == "stall" || how == "stall-polled") comm->set_check_arrivals(false);
  comm->set_polled_collectives(how == "stall-polled");
  Tensor t = ones({1024});
  const auto t0 = Clock::now();
  try {
    if (how == "killed") {
      comm->allreduce(t);
      if (rank == last) std::raise(SIGKILL);
      comm->allreduce(t);
    } else if (how == "stall" || how == "stall-polled") {
      if (rank == 1) {
        std::this_thread::sleep_for(std::chrono::seconds(5));  // never enters the collective
        std::_Exit(0);
      }
      comm->allreduce(t);
    } else if (how == "leave") {
      if (rank == 1) {
        comm->leave("cannot open the data set");
        std::_Exit(0);
      }
      comm->allreduce(t);
    }
    std::printf("rank %d: no error\n", rank);
  } catch (const std::exception& e) {
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("rank %d: %s (after %.1f s)\n", rank, e.what(), s);
  }
  std::fflush(stdout);
  // No rank finalises: MPI_Finalize waits for every peer, and here some are dead or
  // stuck (mpirun, told to recover, would not end the job for them).
  std::_Exit(0);
}
