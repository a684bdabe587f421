// The MPI communicator on MPI_COMM_WORLD: the same collective checks as the threads
// backend (tests/parallel/collective_checks.h), run by every process of
//   mpirun -np N build/tests/weft_mpi_tests
// plus the errors every rank must raise. (A rank that dies is tested separately by
// tests/parallel/mpi_dead_rank.sh: it needs its own mpirun job.)
#include <catch2/catch.hpp>

#include "../algorithm_checks.h"
#include "../collective_checks.h"
#include "../parallel_helpers.h"
#include "../split_checks.h"
#include "parallel/comm/mpi_communicator.h"

using namespace weft;
using namespace weft::parallel;
using Catch::Matchers::Contains;

namespace {
std::shared_ptr<MpiCommunicator> world() { return weft::test::mpi_test_world(); }
}  // namespace

TEST_CASE("mpi communicator: every collective matches the serial result", "[parallel][mpi]") {
  auto c = world();
  REQUIRE_NOTHROW(test::check_all_collectives(*c, {1, 7, 1000}));
  REQUIRE_NOTHROW(test::check_allreduce16_rounding(*c));
  REQUIRE_NOTHROW(test::check_allreduce(*c, 1000003, kFloat32, ReduceOp::Sum));
  REQUIRE_NOTHROW(test::check_allreduce(*c, 1000003, kInt64, ReduceOp::Mean));
  REQUIRE_NOTHROW(test::check_send_recv_ring(*c, 1000003, kFloat32));
}

TEST_CASE("mpi communicator: polled collectives and no handshake give the same results", "[parallel][mpi]") {
  auto c = world();
  c->set_polled_collectives(true);
  REQUIRE_NOTHROW(test::check_all_collectives(*c, {7, 1000}));
  c->set_polled_collectives(false);
  c->set_check_arrivals(false);
  REQUIRE_NOTHROW(test::check_all_collectives(*c, {7}));
  c->set_check_arrivals(true);
}

TEST_CASE("mpi communicator: async handles run in call order", "[parallel][mpi]") {
  auto c = world();
  REQUIRE_NOTHROW(test::check_async(*c, 1001));
}

TEST_CASE("mpi communicator: mismatched sizes make every rank throw, naming both", "[parallel][mpi]") {
  auto c = world();
  if (c->size() < 2) return;
  Tensor t = zeros({c->rank() == 1 ? 8 : 7});
  std::string msg;
  try {
    c->allreduce(t);
  } catch (const Error& e) {
    msg = e.what();
  }
  CHECK_THAT(msg, Contains("allreduce #") && Contains("rank 0 has 7 float32") && Contains("rank 1 has 8 float32"));
  // The communicator is still in step afterwards.
  REQUIRE_NOTHROW(test::check_allreduce(*c, 5, kFloat32, ReduceOp::Sum));
  // A recv expecting the wrong size reports both sizes.
  msg.clear();
  try {
    if (c->rank() == 0) c->send(zeros({6}), 1, 3);
    if (c->rank() == 1) c->recv(zeros({9}), 0, 3);
  } catch (const Error& e) {
    msg = e.what();
  }
  if (c->rank() == 1) CHECK_THAT(msg, Contains("rank 0 sent 6 float32 elements, rank 1 expects 9"));
  c->barrier();
}

TEST_CASE("mpi communicator: algorithms over send/recv match the backend", "[parallel][mpi]") {
  auto c = world();
  REQUIRE_NOTHROW(test::check_all_algorithms(*c, {1, 7, 1000, 1000003}));
}

TEST_CASE("mpi communicator: split into a grid of rows and columns", "[parallel][mpi][split]") {
  auto c = world();
  // Rows of 2: at -np 2 one row of two and two single-rank columns; at -np 3 a row of
  // two, a row of one, and columns {0, 2} and {1}. Then rows of 1 and rows of everyone.
  for (int cols : {2, 1, c->size()}) {
    INFO(cols << " columns");
    REQUIRE_NOTHROW(test::check_split_grid(*c, cols));
  }
  REQUIRE_NOTHROW(test::check_split_undefined(*c));
  // The sub-communicators keep the handshake: a mismatch inside a row names both sizes.
  auto row = c->split(c->rank() / 2, c->rank());
  if (row->size() == 2) {
    std::string msg;
    try {
      Tensor t = zeros({row->rank() == 1 ? 8 : 7});
      row->allreduce(t);
    } catch (const Error& e) {
      msg = e.what();
    }
    CHECK_THAT(msg, Contains("allreduce #0") && Contains("rank 0 has 7 float32") && Contains("rank 1 has 8 float32"));
  }
  c->barrier();
}
