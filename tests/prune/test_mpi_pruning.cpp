// Pruning under MPI: every process of `mpirun -np N build/tests/weft_mpi_tests` prunes its
// replica with its own random generator, and sync_masks must leave every rank with rank
// 0's masks and weights (the threads-backend twin is in test_pruning_speed.cpp).
#include <catch2/catch.hpp>

#include "nn/nn.h"
#include "parallel/comm/mpi_communicator.h"
#include "parallel/prune_sync.h"
#include "prune/prune.h"
#include "tensor/raw.h"

using namespace weft;
namespace prune = weft::prune;

namespace {
// Every rank's copy of t, gathered on every rank: row r is rank r's.
std::vector<std::vector<float>> gather_all(parallel::Communicator& comm, const Tensor& t) {
  Tensor flat = raw::contiguous(t.detach().reshape({t.numel()}));
  Tensor all = zeros({comm.size() * t.numel()});
  comm.allgather(flat, all);
  const std::vector<float> v = all.to_vector<float>();
  std::vector<std::vector<float>> rows;
  for (int r = 0; r < comm.size(); ++r)
    rows.emplace_back(v.begin() + r * t.numel(), v.begin() + (r + 1) * t.numel());
  return rows;
}
}  // namespace

TEST_CASE("mpi: sync_masks gives every rank rank 0's masks and weights", "[prune][mpi]") {
  auto comm = parallel::MpiCommunicator::world();
  comm->set_timeout(parallel::Timeout(20'000));
  manual_seed(21);  // the same replica on every rank...
  nn::Sequential model({std::make_shared<nn::Linear>(24, 16), std::make_shared<nn::ReLU>(),
                        std::make_shared<nn::Linear>(16, 4)});
  prune::Pruner pruner(model);
  Generator gen(700 + comm->rank());  // ...but each rank draws its own random mask
  prune::random(pruner, 0.75, gen);
  // Before: with 2 or more ranks the masks differ somewhere.
  const auto before = gather_all(*comm, pruner.mask(0));
  bool differ = false;
  for (const auto& row : before) differ |= row != before[0];
  if (comm->size() > 1) CHECK(differ);
  parallel::sync_masks(pruner, *comm);
  for (size_t i = 0; i < pruner.size(); ++i) {
    INFO("target " << pruner.name(i));
    const auto masks = gather_all(*comm, pruner.mask(i)), weights = gather_all(*comm, pruner.weight(i));
    for (int r = 1; r < comm->size(); ++r) {
      CHECK(masks[r] == masks[0]);
      CHECK(weights[r] == weights[0]);
    }
    CHECK(pruner.nonzeros(i) == pruner.weight(i).numel() / 4);
  }
}
