// Checks of the algorithms written over send/recv (ring, naive, parameter server) that
// run on any Communicator; like collective_checks.h they throw CheckFailed, so they
// can run on the rank threads of the threads backend or the processes of MPI.
#pragma once

#include "collective_checks.h"
#include "parallel/algorithms/naive_allreduce.h"
#include "parallel/algorithms/parameter_server.h"
#include "parallel/algorithms/ring_allreduce.h"

namespace weft::test {

// The algorithm's result against the serial one, and against the backend's own
// allreduce of the same input (the values are small integers, so both must match exactly).
template <class Algorithm>
void check_algorithm(parallel::Communicator& c, int64_t numel, DType dt, parallel::ReduceOp op, const char* name,
                     Algorithm algorithm) {
  Tensor t = rank_tensor(c.rank(), numel, dt);
  Tensor reference = rank_tensor(c.rank(), numel, dt);
  algorithm(t);
  c.allreduce(reference, op);
  expect_values(t, [&](int64_t i) { return expected_reduction(c.size(), i, dt, op); }, label(c, name, numel, dt));
  const std::vector<double> ours = t.to_vector<double>(), theirs = reference.to_vector<double>();
  for (size_t i = 0; i < ours.size(); ++i)
    expect(ours[i] == theirs[i], detail::str(label(c, name, numel, dt), ": element ", i, " is ", ours[i],
                                             ", the backend's allreduce gives ", theirs[i]));
}

inline void check_ring(parallel::Communicator& c, int64_t numel, DType dt, parallel::ReduceOp op) {
  check_algorithm(c, numel, dt, op, "ring_allreduce", [&](const Tensor& t) { parallel::ring_allreduce(c, t, op); });
}

inline void check_naive(parallel::Communicator& c, int64_t numel, DType dt, parallel::ReduceOp op) {
  check_algorithm(c, numel, dt, op, "naive_allreduce", [&](const Tensor& t) { parallel::naive_allreduce(c, t, op); });
}

// Two parameters; rank r's gradients are rank_tensor(r + 10); two SGD steps; every rank
// must end with p0 - 2 * lr * mean_r(g_r), which the test computes serially.
inline void check_parameter_server(parallel::Communicator& c, int64_t numel) {
  const double lr = 0.5;
  // Rank-dependent starting values: pull() must make them the server's (rank 0's).
  std::vector<Tensor> params = {rank_tensor(c.rank(), numel, kFloat32), rank_tensor(c.rank() + 3, 3, kFloat64)};
  parallel::ParameterServer ps(c, params);
  ps.pull();
  std::vector<Tensor> grads = {rank_tensor(c.rank() + 10, numel, kFloat32), rank_tensor(c.rank() + 20, 3, kFloat64)};
  ps.step(grads, lr);
  ps.step(grads, lr);
  for (int k = 0; k < 2; ++k) {
    const int p_seed = k == 0 ? 0 : 3, g_seed = k == 0 ? 10 : 20;
    expect_values(params[k], [&](int64_t i) {
      double mean = 0;
      for (int r = 0; r < c.size(); ++r) mean += value_at(r + g_seed, i);
      mean /= c.size();
      return value_at(p_seed, i) - 2 * lr * mean;
    }, label(c, "parameter_server", params[k].numel(), params[k].dtype()));
  }
}

inline void check_all_algorithms(parallel::Communicator& c, const std::vector<int64_t>& sizes) {
  using parallel::ReduceOp;
  for (int64_t numel : sizes) {
    for (DType dt : {kFloat32, kInt64})
      for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max}) {
        check_ring(c, numel, dt, op);
        check_naive(c, numel, dt, op);
      }
    check_parameter_server(c, numel);
  }
}

}  // namespace weft::test
