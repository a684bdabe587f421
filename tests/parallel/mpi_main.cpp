// The Catch2 main of weft_mpi_tests, run as `mpirun -np N build/tests/weft_mpi_tests`.
//
// Starts MPI before the tests (so MpiCommunicator::world() finds it initialised) and
// finalises it after. Every rank runs every test case; `--out FILE` becomes FILE for
// rank 0 and FILE.rankR for the others, so each rank's report survives.
#define CATCH_CONFIG_RUNNER
#define OMPI_SKIP_MPICXX 1  // the C API only (the C++ bindings are deprecated)
#include <mpi.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  int provided = 0, rank = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == "--out" && rank > 0) args[i + 1] += ".rank" + std::to_string(rank);
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  int failed = Catch::Session().run(int(cargs.size()), cargs.data());
  MPI_Finalize();
  return failed == 0 ? 0 : 1;
}
