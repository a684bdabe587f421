// Checks of Communicator::split that run on any backend (the threads tests call them on
// rank threads, the MPI tests on MPI_COMM_WORLD). Like collective_checks.h they throw
// CheckFailed instead of using REQUIRE (Catch2's macros are not thread-safe).
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "collective_checks.h"

namespace weft::test {

// The old ranks 0..n-1 that have `color` under color_of, in the order of their key.
template <class Color, class Key>
std::vector<int> expected_members(int n, int color, Color color_of, Key key_of) {
  std::vector<std::pair<int, int>> by_key;  // (key, old rank): MPI_Comm_split's order
  for (int q = 0; q < n; ++q)
    if (color_of(q) == color) by_key.emplace_back(key_of(q), q);
  std::sort(by_key.begin(), by_key.end());
  std::vector<int> members;
  for (const auto& kr : by_key) members.push_back(kr.second);
  return members;
}

// `sub` is this rank's group, `members` its old ranks in new order: checks size and
// rank, then that an allreduce sums exactly the members' values (old rank + 1).
inline void check_group(parallel::Communicator& sub, int old_rank, const std::vector<int>& members,
                        const std::string& name) {
  const int k = int(members.size());
  const int want_rank = int(std::find(members.begin(), members.end(), old_rank) - members.begin());
  expect(sub.size() == k, detail::str(name, ": size ", sub.size(), ", expected ", k));
  expect(sub.rank() == want_rank, detail::str(name, ": rank ", sub.rank(), ", expected ", want_rank));
  Tensor t = full({3}, double(old_rank + 1), {.dtype = kFloat64});
  sub.allreduce(t);
  double want = 0;
  for (int q : members) want += q + 1;
  for (double v : t.to_vector<double>()) expect(v == want, detail::str(name, ": allreduce gave ", v, ", expected ", want));
}

// A ring inside `sub` with isend/irecv: each rank sends its old rank to the next.
inline void check_group_ring(parallel::Communicator& sub, int old_rank, const std::vector<int>& members,
                             const std::string& name) {
  const int k = sub.size();
  if (k == 1) return;
  Tensor out = full({2}, double(old_rank), {.dtype = kFloat64});
  Tensor in = zeros({2}, {.dtype = kFloat64});
  auto s = sub.isend(out, (sub.rank() + 1) % k, 5);
  auto r = sub.irecv(in, (sub.rank() + k - 1) % k, 5);
  s->wait();
  r->wait();
  const double want = members[size_t((sub.rank() + k - 1) % k)];
  for (double v : in.to_vector<double>()) expect(v == want, detail::str(name, ": ring got ", v, ", expected ", want));
}

// The grid of 2-D parallelism on the n ranks of `c`: rows of `cols` ranks (color
// rank / cols, key rank % cols) and columns (color rank % cols, key rank / cols); when n
// is not a multiple of cols the last row is short and some columns too. Then every
// operation inside each group, a reversed key, a nested split, and the parent still in
// step afterwards.
inline void check_split_grid(parallel::Communicator& c, int cols) {
  const int n = c.size(), r = c.rank();
  auto row_of = [cols](int q) { return q / cols; };
  auto col_of = [cols](int q) { return q % cols; };
  auto row = c.split(row_of(r), col_of(r));
  auto col = c.split(col_of(r), row_of(r));
  expect(row && col, "split with a color >= 0 gave no communicator");
  expect(row->backend() == c.backend() && row->timeout() == c.timeout(), "split: not the parent's backend and timeout");
  const auto row_members = expected_members(n, row_of(r), row_of, col_of);
  const auto col_members = expected_members(n, col_of(r), col_of, row_of);
  check_group(*row, r, row_members, "row");
  check_group(*col, r, col_members, "column");

  // Messages of different groups never mix: the same (peer, tag) is used in the row and
  // in the parent at once, posted in opposite orders on the two sides.
  check_group_ring(*row, r, row_members, "row");
  check_group_ring(*col, r, col_members, "column");
  if (row->size() > 1 && row->rank() < 2) {
    const int peer_new = 1 - row->rank(), peer_old = row_members[size_t(peer_new)];
    Tensor in_row = zeros({1}), in_parent = zeros({1});
    std::vector<parallel::WorkHandle> h;
    if (row->rank() == 0) {
      h.push_back(c.isend(full({1}, 200.0), peer_old, 7));
      h.push_back(row->isend(full({1}, 100.0), peer_new, 7));
    } else {
      h.push_back(row->irecv(in_row, peer_new, 7));
      h.push_back(c.irecv(in_parent, peer_old, 7));
    }
    for (auto& w : h) w->wait();
    if (row->rank() == 1)
      expect(in_row.item<float>() == 100 && in_parent.item<float>() == 200, "row and parent messages mixed");
  }

  // Every collective, and the async ones, inside the groups.
  check_all_collectives(*row, {1, 7, 1000});
  check_async(*col, 101);

  // A reversed key reverses the numbering; broadcast's root 0 is then old rank n-1.
  auto rev = c.split(0, -r);
  check_group(*rev, r, expected_members(n, 0, [](int) { return 0; }, [](int q) { return -q; }), "reversed");
  Tensor b = full({2}, double(r));
  rev->broadcast(b, 0);
  expect(b.to_vector<float>()[0] == float(n - 1), "reversed: broadcast from new rank 0 is not old rank n-1");

  // A nested split: the column, split again by parity of its new rank.
  auto half = col->split(col->rank() % 2, col->rank());
  std::vector<int> half_members;
  for (size_t i = size_t(col->rank() % 2); i < col_members.size(); i += 2) half_members.push_back(col_members[i]);
  check_group(*half, r, half_members, "nested");
  // A timeline shows every sub-communicator's spans under the world rank.
  for (const auto* g : {row.get(), col.get(), rev.get(), half.get()})
    expect(g->trace_rank() == c.trace_rank(), detail::str("split: trace rank ", g->trace_rank(), ", the parent's ",
                                                          c.trace_rank()));

  // The parent is still in step: its own sequence numbers were not disturbed.
  check_allreduce(c, 7, kFloat32, parallel::ReduceOp::Sum);
}

// A negative color is in no group: nullptr there, the others numbered without it.
inline void check_split_undefined(parallel::Communicator& c) {
  const int r = c.rank();
  auto sub = c.split(r == 0 ? -1 : 0, r);
  if (r == 0) {
    expect(sub == nullptr, "a negative color gave a communicator");
    return;
  }
  expect(sub != nullptr, "color 0 gave no communicator");
  std::vector<int> members;
  for (int q = 1; q < c.size(); ++q) members.push_back(q);
  check_group(*sub, r, members, "without rank 0");
}

}  // namespace weft::test
