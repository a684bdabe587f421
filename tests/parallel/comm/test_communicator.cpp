// The threads communicator: every collective against its serial result at world sizes
// 1-4, the errors every rank must raise (mismatched sizes, a rank that never comes),
// async handles, and the Chrome trace recorder.
#include <chrono>
#include <fstream>
#include <thread>

#include "../../helpers.h"
#include "../collective_checks.h"
#include "../split_checks.h"
#include "parallel/comm/threads_communicator.h"
#include "parallel/trace.h"
#include "tensor/raw.h"

using namespace weft;
using namespace weft::parallel;
using Catch::Matchers::Contains;

namespace {

// Runs fn on n rank threads of a fresh group whose ranks do NOT get marked gone when fn
// returns (unlike run_ranks), and returns each rank's error message ("" for none).
std::vector<std::string> errors_of(int n, Timeout timeout, const std::function<void(Communicator&)>& fn) {
  auto comms = make_thread_group(n, timeout);
  std::vector<std::string> errors(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        fn(*comms[r]);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  return errors;
}

}  // namespace

TEST_CASE("threads communicator: every collective matches the serial result", "[parallel]") {
  for (int n : {1, 2, 3, 4}) {
    INFO("world size " << n);
    REQUIRE_NOTHROW(run_ranks(n, [](Communicator& c) {
      test::check_all_collectives(c, {1, 7, 1000});
      test::check_allreduce16_rounding(c);
    }));
  }
}

TEST_CASE("threads communicator: a 16-bit all-reduce adds in float32 and rounds once", "[parallel]") {
  // Values that bfloat16 cannot add exactly: a ring rounding each partial sum would drift;
  // the shared-memory all-reduce sees every rank's values at once and rounds once.
  for (int n : {2, 5})
    for (DType dt : {kBFloat16, kFloat16}) {
      INFO(n << " ranks, " << dtype_name(dt));
      auto value = [](int r, int64_t i) { return 1.0 + 0.013 * double(r + 1) * double(i % 17) + 0.001 * r; };
      std::vector<std::vector<float>> got(static_cast<size_t>(n));
      REQUIRE_NOTHROW(run_ranks(n, [&](Communicator& c) {
        std::vector<double> v(3000);
        for (int64_t i = 0; i < 3000; ++i) v[size_t(i)] = value(c.rank(), i);
        Tensor t = raw::to_dtype(tensor(v, {3000}, {.dtype = kFloat64}), dt);
        c.allreduce(t, ReduceOp::Sum);
        got[size_t(c.rank())] = raw::to_dtype(t, kFloat32).to_vector<float>();
      }));
      for (int64_t i = 0; i < 3000; ++i) {
        float sum = 0;  // rank order, in float32, of the 16-bit inputs
        for (int r = 0; r < n; ++r) sum += raw::to_dtype(full({}, value(r, i), {.dtype = dt}), kFloat32).item<float>();
        const float want = raw::to_dtype(full({}, sum, {.dtype = dt}), kFloat32).item<float>();
        for (int r = 0; r < n; ++r) REQUIRE(got[size_t(r)][size_t(i)] == want);
      }
    }
}

TEST_CASE("threads communicator: a million and three elements", "[parallel]") {
  for (int n : {2, 3}) {
    INFO("world size " << n);
    REQUIRE_NOTHROW(run_ranks(n, [](Communicator& c) {
      test::check_allreduce(c, 1000003, kFloat32, ReduceOp::Sum);
      test::check_allreduce(c, 1000003, kInt64, ReduceOp::Max);
      test::check_allreduce(c, 1000003, kFloat32, ReduceOp::Mean);
      test::check_broadcast(c, 1000003, kFloat32, 1);
      test::check_allgather(c, 1000003, kInt64);
      test::check_reduce_scatter(c, 1000003, kFloat32, ReduceOp::Sum);
      test::check_send_recv_ring(c, 1000003, kFloat32);
    }));
  }
}

TEST_CASE("threads communicator: async handles run in call order and rethrow", "[parallel]") {
  for (int n : {1, 2, 3, 4}) {
    INFO("world size " << n);
    REQUIRE_NOTHROW(run_ranks(n, [](Communicator& c) { test::check_async(c, 1001); }));
  }
  // An async op that fails (rank 1 passes a bigger tensor) rethrows from wait().
  auto errors = errors_of(2, Timeout(2000), [](Communicator& c) {
    Tensor t = zeros({c.rank() == 0 ? 4 : 5});
    auto w = c.allreduce_async(t);
    w->wait();
  });
  for (const auto& e : errors) CHECK_THAT(e, Contains("allreduce #0") && Contains("rank 1 has 5 float32"));
}

TEST_CASE("threads communicator: mismatched sizes make every rank throw, naming both", "[parallel]") {
  auto errors = errors_of(3, Timeout(2000), [](Communicator& c) {
    Tensor ok = ones({3});
    c.allreduce(ok);  // #0 agrees
    Tensor t = zeros({c.rank() == 2 ? 8 : 7});
    c.allreduce(t);   // #1 does not
  });
  for (int r = 0; r < 3; ++r) {
    INFO("rank " << r);
    CHECK_THAT(errors[r], Contains("allreduce #1") && Contains("rank 0 has 7 float32") &&
                              Contains("rank 2 has 8 float32"));
  }
  // A different collective at the same sequence number.
  errors = errors_of(2, Timeout(2000), [](Communicator& c) {
    Tensor t = zeros({4});
    if (c.rank() == 0) c.allreduce(t);
    else c.broadcast(t, 0);
  });
  for (const auto& e : errors) CHECK_THAT(e, Contains("collective #0") && Contains("rank 0 allreduce, rank 1 broadcast"));
  // One rank's own bad argument is reported by every rank.
  errors = errors_of(2, Timeout(2000), [](Communicator& c) {
    Tensor t = zeros({4, 3});
    c.allreduce(c.rank() == 1 ? t.t() : t);
  });
  for (const auto& e : errors) CHECK_THAT(e, Contains("allreduce #0: rank 1") && Contains("not contiguous"));
  // send/recv that disagree on the size fail on both sides.
  errors = errors_of(2, Timeout(2000), [](Communicator& c) {
    if (c.rank() == 0) c.send(zeros({6}), 1);
    else c.recv(zeros({9}), 0);
  });
  for (const auto& e : errors) CHECK_THAT(e, Contains("rank 0 sends 6 float32 elements, rank 1 expects 9"));
}

TEST_CASE("threads communicator: a rank that never arrives fails the others within the timeout", "[parallel]") {
  using namespace std::chrono;
  // Rank 3 stalls (sleeps past the timeout) instead of calling allreduce #1.
  auto t0 = steady_clock::now();
  auto errors = errors_of(4, Timeout(200), [](Communicator& c) {
    Tensor t = ones({10});
    c.allreduce(t);
    if (c.rank() == 3) {
      std::this_thread::sleep_for(milliseconds(400));
      return;
    }
    c.allreduce(t);
  });
  auto elapsed = duration_cast<milliseconds>(steady_clock::now() - t0).count();
  for (int r = 0; r < 3; ++r) {
    INFO("rank " << r);
    CHECK_THAT(errors[r], Contains("allreduce #1") && Contains("rank 3 did not arrive within 200 ms"));
  }
  CHECK(errors[3].empty());
  CHECK(elapsed < 2000);

  // A rank whose function throws is marked gone: the others fail at once, and run_ranks
  // rethrows the original error.
  t0 = steady_clock::now();
  std::string first;
  try {
    run_ranks(3, [](Communicator& c) {
      Tensor t = ones({10});
      if (c.rank() == 1) throw Error("rank 1 ran out of data");
      c.allreduce(t);
    }, Timeout(60'000));
  } catch (const Error& e) {
    first = e.what();
  }
  CHECK(first == "rank 1 ran out of data");
  CHECK(steady_clock::now() - t0 < seconds(5));  // far below the 60 s timeout

  // Same for a rank that returns early, and an explicit abort() seen by recv.
  errors = errors_of(2, Timeout(60'000), [](Communicator& c) {
    if (c.rank() == 1) {
      c.abort("stopping");
      return;
    }
    c.recv(zeros({3}), 1);
  });
  CHECK_THAT(errors[0], Contains("recv from rank 1 (tag 0): rank 1 did not send (it aborted: stopping)"));
  std::string msg;
  try {
    run_ranks(2, [](Communicator& c) {
      if (c.rank() == 0) c.barrier();
    });
  } catch (const Error& e) {
    msg = e.what();
  }
  CHECK_THAT(msg, Contains("barrier #0: rank 1 did not arrive (its function returned)"));
}

TEST_CASE("threads communicator: recv times out naming the silent sender", "[parallel]") {
  auto errors = errors_of(2, Timeout(200), [](Communicator& c) {
    if (c.rank() == 0) c.recv(zeros({3}), 1, 7);
    else std::this_thread::sleep_for(std::chrono::milliseconds(400));
  });
  CHECK_THAT(errors[0], Contains("recv from rank 1 (tag 7): rank 1 did not send within 200 ms"));
}

TEST_CASE("trace: communicator ops record spans per rank and write a Chrome trace", "[parallel]") {
  trace::clear();
  trace::enable();
  run_ranks(2, [](Communicator& c) {
    Tensor t = ones({100});
    c.allreduce(t);
    c.allreduce_async(t)->wait();
    trace::Scope s("compute", "compute", c.rank());
  });
  trace::enable(false);
  auto events = trace::events();
  int allreduces = 0, computes = 0;
  for (const auto& e : events) {
    allreduces += e.name == "allreduce";
    computes += e.name == "compute";
    CHECK((e.pid == 0 || e.pid == 1));
    CHECK(e.dur_us >= 0);
  }
  CHECK(allreduces == 4);
  CHECK(computes == 2);
  test::TempDir dir;
  trace::write_chrome_json(dir.file("trace.json"));
  std::ifstream in(dir.file("trace.json"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_THAT(text, Contains("\"traceEvents\"") && Contains("\"ph\": \"X\"") && Contains("rank 1"));
  trace::clear();
  run_ranks(2, [](Communicator& c) { c.barrier(); });
  CHECK(trace::events().empty());  // disabled: nothing recorded
}

TEST_CASE("run_ranks hands out shared_ptr<Communicator> to functions that want one", "[parallel]") {
  // What DistributedDataParallel keeps: a handle to the rank's communicator.
  std::vector<std::shared_ptr<parallel::Communicator>> kept(3);
  parallel::run_ranks(3, [&](const std::shared_ptr<parallel::Communicator>& comm) {
    Tensor t = full({4}, double(comm->rank() + 1));
    comm->allreduce(t, parallel::ReduceOp::Sum);
    CHECK(t.to_vector<float>() == std::vector<float>(4, 6.0f));
    kept[comm->rank()] = comm;
  });
  for (int r = 0; r < 3; ++r) CHECK((kept[r] && kept[r]->rank() == r && kept[r]->size() == 3));
  // A rank that throws stops the others at once (not at the timeout), and its error is rethrown.
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(parallel::run_ranks(2, [&](const std::shared_ptr<parallel::Communicator>& comm) {
                      if (comm->rank() == 1) throw Error("rank 1 failed on purpose");
                      Tensor t = full({4}, 1.0);
                      comm->allreduce(t);
                    }),
                    Catch::Contains("rank 1 failed on purpose") || Catch::Contains("rank 1"));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
}

// ---- split ------------------------------------------------------------------------------

TEST_CASE("threads communicator: split into a grid of rows and columns", "[parallel][split]") {
  // 4 ranks as 2 x 2, 6 as 2 x 3 and 3 x 2, and 6 in rows of 4 (a short last row, so
  // some columns have one rank).
  for (auto [n, cols] : std::vector<std::pair<int, int>>{{4, 2}, {6, 3}, {6, 2}, {6, 4}}) {
    INFO("world size " << n << ", " << cols << " columns");
    const int c_cols = cols;  // not the structured binding itself: clang 14 cannot capture one
    REQUIRE_NOTHROW(run_ranks(n, [c_cols](Communicator& c) { test::check_split_grid(c, c_cols); }));
  }
  for (int n : {1, 2, 4}) {
    INFO("world size " << n);
    REQUIRE_NOTHROW(run_ranks(n, [](Communicator& c) { test::check_split_undefined(c); }));
  }
}

TEST_CASE("threads communicator: sub-communicators keep the parent's timeout and name the missing rank",
          "[parallel][split]") {
  using namespace std::chrono;
  // Rank 3 stalls instead of calling split: the others fail within the timeout, naming it.
  auto t0 = steady_clock::now();
  auto errors = errors_of(4, Timeout(200), [](Communicator& c) {
    if (c.rank() == 3) {
      std::this_thread::sleep_for(milliseconds(400));
      return;
    }
    c.split(0, c.rank());
  });
  auto elapsed = duration_cast<milliseconds>(steady_clock::now() - t0).count();
  for (int r = 0; r < 3; ++r) {
    INFO("rank " << r);
    CHECK_THAT(errors[r], Contains("split #0") && Contains("rank 3 did not arrive within 200 ms"));
  }
  CHECK(errors[3].empty());
  CHECK(elapsed < 2000);

  // Inside a sub-communicator too: in the column {1, 3}, rank 3 (new rank 1) stalls.
  errors = errors_of(4, Timeout(200), [](Communicator& c) {
    auto col = c.split(c.rank() % 2, c.rank());
    if (col->timeout() != Timeout(200)) throw Error("the timeout was not inherited");
    if (c.rank() == 3) {
      std::this_thread::sleep_for(milliseconds(400));
      return;
    }
    Tensor t = ones({4});
    col->allreduce(t);
  });
  CHECK(errors[0].empty());
  CHECK(errors[2].empty());
  CHECK_THAT(errors[1], Contains("allreduce #0") && Contains("rank 1 did not arrive within 200 ms"));

  // A rank whose function throws is gone from its sub-groups too: they fail at once.
  t0 = steady_clock::now();
  CHECK_THROWS(run_ranks(
      4,
      [](Communicator& c) {
        auto row = c.split(c.rank() / 2, c.rank());
        if (c.rank() == 1) throw Error("rank 1 failed on purpose");
        row->barrier();
      },
      Timeout(60'000)));
  CHECK(steady_clock::now() - t0 < seconds(10));
}
