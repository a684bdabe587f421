// A rank that never arrives, under MPI: run by tests/parallel/mpi_dead_rank.sh as
//   mpirun -np 3 build/tests/mpi_dead_rank stall|kill
// All ranks do allreduce #0 together. Then the last rank stops -- "stall": sleeps for
// a minute; "kill": raises SIGKILL -- and the others call allreduce #1 with a 1 s
// timeout. They must print the weft::Error naming the missing rank, then rank 0 ends
// the job with MPI_Abort (the stalled rank would otherwise sleep on).
#define OMPI_SKIP_MPICXX 1  // the C API only (the C++ bindings are deprecated)
#include <mpi.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <thread>

#include "parallel/comm/mpi_communicator.h"
#include "tensor/tensor.h"

using namespace weft;

int main(int argc, char** argv) {
  const bool kill = argc > 1 && std::strcmp(argv[1], "kill") == 0;
  auto comm = parallel::MpiCommunicator::world();
  comm->set_timeout(parallel::Timeout(1000));
  Tensor t = ones({1000});
  comm->allreduce(t);
  const int last = comm->size() - 1;
  if (comm->rank() == last) {
    if (kill) std::raise(SIGKILL);
    std::this_thread::sleep_for(std::chrono::seconds(60));
    return 1;
  }
  const auto t0 = std::chrono::steady_clock::now();
  try {
    comm->allreduce(t);
    std::printf("rank %d: allreduce #1 returned without rank %d\n", comm->rank(), last);
  } catch (const Error& e) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    std::printf("rank %d caught after %lld ms: %s\n", comm->rank(), (long long)ms.count(), e.what());
  }
  std::fflush(stdout);
  if (comm->rank() == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the others print
    comm->abort("test finished");
  }
  std::this_thread::sleep_for(std::chrono::seconds(60));  // until the abort ends us
  return 1;
}
