// Ring all-reduce, naive all-reduce and the parameter server, written over send/recv,
// checked against the serial result and against the backend's own allreduce (ring and
// naive), on the threads backend at world sizes 1-5 (3 and 5: rings that are not a
// power of two), sizes smaller than, not divisible by, and far larger than the world
// size, float32 and int64, sum, mean and max.
#include <map>
#include <set>
#include <mutex>

#include "../helpers.h"
#include "algorithm_checks.h"
#include "parallel/comm/threads_communicator.h"

using namespace weft;
using namespace weft::parallel;
using Catch::Matchers::Contains;

TEST_CASE("ring, naive and parameter server match the serial result", "[parallel]") {
  for (int n : {1, 2, 3, 4, 5}) {
    INFO("world size " << n);
    REQUIRE_NOTHROW(run_ranks(n, [](Communicator& c) { test::check_all_algorithms(c, {1, 2, 7, 1000}); }));
  }
  for (int n : {3, 4}) {
    INFO("world size " << n << ", 1000003 elements");
    REQUIRE_NOTHROW(run_ranks(n, [](Communicator& c) {
      test::check_ring(c, 1000003, kFloat32, ReduceOp::Sum);
      test::check_ring(c, 1000003, kFloat32, ReduceOp::Mean);
      test::check_naive(c, 1000003, kInt64, ReduceOp::Max);
      test::check_parameter_server(c, 1000003);
    }));
  }
}

TEST_CASE("ring chunks cover the tensor exactly, in order, sizes differing by at most one", "[parallel]") {
  for (int64_t numel : {0, 1, 3, 7, 10, 1000003})
    for (int n : {1, 2, 3, 4, 7}) {
      int64_t expect_begin = 0, smallest = numel, largest = 0;
      for (int c = 0; c < n; ++c) {
        auto [b, e] = ring_chunk(numel, n, c);
        CHECK(b == expect_begin);
        expect_begin = e;
        smallest = std::min(smallest, e - b);
        largest = std::max(largest, e - b);
      }
      CHECK(expect_begin == numel);
      CHECK(largest - smallest <= 1);
    }
}

TEST_CASE("ring trace: the textbook schedule, every chunk reduced from every rank", "[parallel]") {
  // Replays the observed steps on sets: holds[r][c] = the ranks whose values chunk c of
  // rank r contains. At the end every rank must hold every rank in every chunk.
  const int n = 4;
  std::mutex mu;
  std::vector<RingStep> steps;
  RingOptions opt;
  opt.observer = [&](const RingStep& s) {
    std::lock_guard lock(mu);
    steps.push_back(s);
  };
  run_ranks(n, [&](Communicator& c) {
    Tensor t = test::rank_tensor(c.rank(), 10, kFloat32);
    ring_allreduce(c, t, ReduceOp::Sum, opt);
  });
  REQUIRE(steps.size() == size_t(n * 2 * (n - 1)));
  std::vector<std::vector<std::set<int>>> holds(n, std::vector<std::set<int>>(n));
  for (int r = 0; r < n; ++r)
    for (int c = 0; c < n; ++c) holds[r][c] = {r};
  for (RingPhase phase : {RingPhase::ReduceScatter, RingPhase::AllGather})
    for (int s = 0; s < n - 1; ++s) {
      auto before = holds;
      for (const RingStep& st : steps) {
        if (st.phase != phase || st.step != s) continue;
        const int left = (st.rank + n - 1) % n;
        // What I receive is what my left neighbour sends this step.
        const RingStep* sender = nullptr;
        for (const RingStep& o : steps)
          if (o.phase == phase && o.step == s && o.rank == left) sender = &o;
        REQUIRE(sender);
        CHECK(sender->send_chunk == st.recv_chunk);
        auto& mine = holds[st.rank][st.recv_chunk];
        const auto& theirs = before[left][st.recv_chunk];
        if (phase == RingPhase::ReduceScatter) mine.insert(theirs.begin(), theirs.end());
        else mine = theirs;
      }
    }
  for (int r = 0; r < n; ++r)
    for (int c = 0; c < n; ++c) CHECK(holds[r][c].size() == size_t(n));
}

TEST_CASE("algorithms: a rank that stops makes the others fail naming it", "[parallel]") {
  std::string msg;
  try {
    run_ranks(3, [](Communicator& c) {
      Tensor t = ones({100});
      if (c.rank() == 2) return;  // never joins the ring
      ring_allreduce(c, t);
    }, Timeout(5000));
  } catch (const Error& e) {
    msg = e.what();
  }
  CHECK_THAT(msg, Contains("rank 2 did not") && Contains("its function returned"));
  // Bad arguments are caught before any message is sent.
  CHECK_THROWS_WITH(run_ranks(1, [](Communicator& c) { ring_allreduce(c, ones({4, 3}).t()); }),
                    Contains("ring_allreduce: the tensor (shape (3,4)) is not contiguous"));
  CHECK_THROWS_WITH(run_ranks(2, [](Communicator& c) {
    std::vector<Tensor> p = {ones({3})};
    ParameterServer ps(c, p);
    ps.step({ones({4})}, 0.1);
  }), Contains("gradient 0 is (4) float32, its parameter (3) float32"));
}
