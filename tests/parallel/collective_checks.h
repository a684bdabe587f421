// Checks of every collective that run on any Communicator: each rank fills its tensors
// with values that depend on (rank, index), runs the collective, and compares with the
// serial computation of what every rank should hold.
//
// They throw CheckFailed instead of using REQUIRE, because Catch2's assertion macros
// are not thread-safe and the threads backend runs them on N rank threads at once;
// run_ranks() rethrows the first failure into the test's own thread. The MPI test
// binary calls the same functions on MPI_COMM_WORLD.
#pragma once

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel/comm/communicator.h"
#include "tensor/creation.h"
#include "tensor/raw.h"
#include "tensor/tensor.h"

namespace weft::test {

struct CheckFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline void expect(bool ok, const std::string& what) {
  if (!ok) throw CheckFailed(what);
}

// Rank r's value at index i: small integers, so float32 sums are exact.
inline double value_at(int rank, int64_t i) { return double((rank * 37 + i * 13) % 101) - 50.0; }

inline Tensor rank_tensor(int rank, int64_t numel, DType dtype) {
  std::vector<double> v(numel);
  for (int64_t i = 0; i < numel; ++i) v[i] = value_at(rank, i);
  return raw::to_dtype(weft::tensor(v, Shape{numel}, {.dtype = kFloat64}), dtype);  // the values are exact in every dtype
}

// How far a result of dtype dt may be from the exact one, for a reduction over n ranks:
// nothing but float noise for 32 and 64 bits; for bfloat16 and float16, one rounding of
// each partial sum a ring or tree passes on (at most n - 1, each at most half a unit in
// the last place of a value up to 50 n) and of the result.
inline double tolerance(DType dt, int n, double want) {
  if (!is_half(dt)) return 1e-5 * std::max(1.0, std::abs(want));
  const double eps = dt == kBFloat16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
  return eps * (50.0 * n * (n - 1) + std::abs(want)) + 1e-6;
}

// What `op` over ranks 0..n-1 of value_at(r, i) is, computed the way the dtype would.
inline double expected_reduction(int n, int64_t i, DType dtype, parallel::ReduceOp op) {
  double acc = value_at(0, i);
  for (int r = 1; r < n; ++r)
    acc = op == parallel::ReduceOp::Max ? std::max(acc, value_at(r, i)) : acc + value_at(r, i);
  if (op == parallel::ReduceOp::Mean) acc = dtype == kInt64 ? double(int64_t(acc) / n) : acc / n;
  return acc;
}

// Compares t[i] with want(i) for every i, within tolerance(dtype, n ranks); reports the
// first mismatch.
template <class Want>
void expect_values(const Tensor& t, Want want, const std::string& what, int n = 1) {
  std::vector<double> got = raw::to_dtype(t, kFloat64).to_vector<double>();
  for (size_t i = 0; i < got.size(); ++i) {
    double w = want(int64_t(i));
    if (!(std::abs(got[i] - w) <= tolerance(t.dtype(), n, w)))
      throw CheckFailed(detail::str(what, ": element ", i, " is ", got[i], ", expected ", w));
  }
}

inline std::string label(const parallel::Communicator& c, const char* op, int64_t numel, DType dt) {
  return detail::str(c.backend(), " ", op, " (rank ", c.rank(), " of ", c.size(), ", ", numel, " ",
                     dtype_name(dt), ")");
}

inline void check_allreduce(parallel::Communicator& c, int64_t numel, DType dt, parallel::ReduceOp op) {
  Tensor t = rank_tensor(c.rank(), numel, dt);
  c.allreduce(t, op);
  expect_values(t, [&](int64_t i) { return expected_reduction(c.size(), i, dt, op); },
                label(c, parallel::reduce_op_name(op), numel, dt), c.size());
}

inline void check_broadcast(parallel::Communicator& c, int64_t numel, DType dt, int root) {
  Tensor t = rank_tensor(c.rank(), numel, dt);
  c.broadcast(t, root);
  expect_values(t, [&](int64_t i) { return value_at(root, i); }, label(c, "broadcast", numel, dt));
}

inline void check_allgather(parallel::Communicator& c, int64_t numel, DType dt) {
  Tensor in = rank_tensor(c.rank(), numel, dt);
  Tensor out = zeros({c.size() * numel}, {.dtype = dt});
  c.allgather(in, out);
  expect_values(out, [&](int64_t i) { return value_at(int(i / numel), i % numel); },
                label(c, "allgather", numel, dt));
}

// Each rank's `in` has size() * numel elements; rank r gets the reduction of block r.
inline void check_reduce_scatter(parallel::Communicator& c, int64_t numel, DType dt, parallel::ReduceOp op) {
  Tensor in = rank_tensor(c.rank(), c.size() * numel, dt);
  Tensor out = zeros({numel}, {.dtype = dt});
  c.reduce_scatter(in, out, op);
  expect_values(out, [&](int64_t i) { return expected_reduction(c.size(), c.rank() * numel + i, dt, op); },
                label(c, "reduce_scatter", numel, dt), c.size());
}

// Every rank sends to its right neighbour and receives from its left one, with isend
// and irecv both posted before either is waited on (blocking send first would deadlock
// a rendezvous backend), then the same again with the blocking calls, ordered by rank
// parity.
inline void check_send_recv_ring(parallel::Communicator& c, int64_t numel, DType dt) {
  const int n = c.size(), right = (c.rank() + 1) % n, left = (c.rank() + n - 1) % n;
  Tensor mine = rank_tensor(c.rank(), numel, dt);
  Tensor got = zeros({numel}, {.dtype = dt});
  auto s = c.isend(mine, right, 5);
  auto r = c.irecv(got, left, 5);
  r->wait();
  s->wait();
  expect(s->is_completed() && r->is_completed(), "isend/irecv handles report completion after wait");
  expect_values(got, [&](int64_t i) { return value_at(left, i); }, label(c, "isend/irecv", numel, dt));
  if (n == 1) return;
  Tensor got2 = zeros({numel}, {.dtype = dt});
  if (c.rank() % 2 == 0) {
    c.send(mine, right, 6);
    c.recv(got2, left, 6);
  } else {
    c.recv(got2, left, 6);
    c.send(mine, right, 6);
  }
  // Even ranks send first, odd ranks receive first, so a rendezvous send (one that
  // returns only once the receiver took the data) never waits in a cycle; with an odd
  // world size rank n-1 and rank 0 both send first and the chain still unwinds.
  expect_values(got2, [&](int64_t i) { return value_at(left, i); }, label(c, "send/recv", numel, dt));
}

// Several async all-reduces in flight, then a blocking one: all complete, in order.
inline void check_async(parallel::Communicator& c, int64_t numel) {
  std::vector<Tensor> ts;
  std::vector<parallel::WorkHandle> works;
  for (int k = 0; k < 4; ++k) {
    ts.push_back(rank_tensor(c.rank() + k, numel, kFloat32));
    works.push_back(c.allreduce_async(ts.back(), parallel::ReduceOp::Sum));
  }
  Tensor b = rank_tensor(c.rank(), numel, kInt64);
  auto bw = c.broadcast_async(b, c.size() - 1);
  Tensor blocking = rank_tensor(c.rank(), numel, kFloat32);
  c.allreduce(blocking, parallel::ReduceOp::Max);  // runs after the queued ones
  for (auto& w : works) w->wait();
  bw->wait();
  expect(works[0]->is_completed(), "async handle completed after wait");
  for (int k = 0; k < 4; ++k) {
    expect_values(ts[k], [&](int64_t i) {
      double s = 0;
      for (int r = 0; r < c.size(); ++r) s += value_at(r + k, i);
      return s;
    }, label(c, "allreduce_async", numel, kFloat32));
  }
  expect_values(b, [&](int64_t i) { return value_at(c.size() - 1, i); }, label(c, "broadcast_async", numel, kInt64));
  expect_values(blocking, [&](int64_t i) { return expected_reduction(c.size(), i, kFloat32, parallel::ReduceOp::Max); },
                label(c, "allreduce after async", numel, kFloat32));
}

// 16-bit all-reduces of values their sums cannot hold exactly (the integer values above
// add exactly), over more elements than reduce.cpp's 2048-element blocks: within one
// rounding of each partial sum, whichever way the backend adds.
inline void check_allreduce16_rounding(parallel::Communicator& c) {
  constexpr int64_t kN = 5000;
  const int n = c.size();
  auto value = [](int r, int64_t i) { return 1.0 + 0.0137 * double((r + 1) * (i % 29)) + 0.001 * r; };
  for (DType dt : {kBFloat16, kFloat16})
    for (parallel::ReduceOp op : {parallel::ReduceOp::Sum, parallel::ReduceOp::Mean}) {
      std::vector<double> v(kN);
      for (int64_t i = 0; i < kN; ++i) v[size_t(i)] = value(c.rank(), i);
      Tensor t = raw::to_dtype(weft::tensor(v, Shape{kN}, {.dtype = kFloat64}), dt);
      c.allreduce(t, op);
      const std::vector<double> got = raw::to_dtype(t, kFloat64).to_vector<double>();
      const double eps = dt == kBFloat16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
      for (int64_t i = 0; i < kN; ++i) {
        double sum = 0;
        for (int r = 0; r < n; ++r) sum += value(r, i);
        const double want = op == parallel::ReduceOp::Mean ? sum / n : sum;
        // The inputs rounded (n of them), each partial sum (n - 1), the result (1).
        const double tol = eps * (2.0 * n) * want + 1e-6;  // each error at most eps/2 of a value <= the sum
        if (!(std::abs(got[size_t(i)] - want) <= tol))
          throw CheckFailed(detail::str(label(c, parallel::reduce_op_name(op), kN, dt), ": element ", i, " is ",
                                        got[size_t(i)], ", expected ", want, " within ", tol));
      }
    }
}

// Every collective at every size, dtype and reduction (the bulk of the coverage).
inline void check_all_collectives(parallel::Communicator& c, const std::vector<int64_t>& sizes) {
  using parallel::ReduceOp;
  for (int64_t numel : sizes) {
    for (DType dt : {kFloat32, kInt64, kBFloat16, kFloat16}) {
      for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max}) {
        check_allreduce(c, numel, dt, op);
        check_reduce_scatter(c, numel, dt, op);
      }
      check_broadcast(c, numel, dt, 0);
      check_broadcast(c, numel, dt, c.size() - 1);
      check_allgather(c, numel, dt);
      check_send_recv_ring(c, numel, dt);
    }
    c.barrier();
  }
}

}  // namespace weft::test
