// The asynchronous parameter server (parallel/algorithms/async_parameter_server.h) over
// the threads backend: S = 0 is the synchronous ParameterServer bit for bit; a bound S
// is never exceeded, even with a worker much slower than the others; fully asynchronous
// training converges; and the staleness stats count every push (also in the trace).
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "../helpers.h"
#include "parallel/algorithms/async_parameter_server.h"
#include "parallel/algorithms/parameter_server.h"
#include "parallel/comm/threads_communicator.h"
#include "parallel/trace.h"

using namespace weft;
using namespace weft::parallel;

namespace {

// Rank-dependent starting parameters (pull() must replace them with the server's).
std::vector<Tensor> start_params(int rank) {
  Generator gen(100 + uint64_t(rank));
  return {randn({37}, {}, gen), randn({5, 3}, {}, gen)};
}

// A gradient that depends on the parameters, the rank and the step, so the order in
// which updates land changes the result: g = (rank + 1) * 0.3 * p + noise(rank, step).
std::vector<Tensor> make_grads(const std::vector<Tensor>& params, int rank, int step) {
  Generator gen(1000 * uint64_t(rank) + uint64_t(step));
  std::vector<Tensor> grads;
  for (const Tensor& p : params) {
    Tensor g = randn(p.shape(), {}, gen);
    float* gp = g.data<float>();
    const float* pp = p.data<float>();
    for (int64_t k = 0; k < p.numel(); ++k) gp[k] += float(rank + 1) * 0.3f * pp[k];
    grads.push_back(g);
  }
  return grads;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel()) return false;
  return std::memcmp(a.raw_data(), b.raw_data(), size_t(a.numel()) * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("async ps: staleness 0 is the synchronous parameter server bit for bit", "[parallel][async_ps]") {
  const double lr = 0.1;
  const int steps = 6;
  for (int n : {1, 2, 3, 4}) {
    INFO("world size " << n);
    std::vector<std::vector<Tensor>> sync(static_cast<size_t>(n)), ssp(static_cast<size_t>(n));
    run_ranks(n, [&](Communicator& c) {
      std::vector<Tensor> p = start_params(c.rank());
      ParameterServer ps(c, p);
      ps.pull();
      for (int s = 0; s < steps; ++s) ps.step(make_grads(p, c.rank(), s), lr);
      sync[size_t(c.rank())] = p;
    });
    // (Catch2's assertions are not thread-safe: the rank threads record, the test checks.)
    std::vector<std::vector<int64_t>> versions(static_cast<size_t>(n));
    int64_t max_staleness = -1;
    bool server_same = false;
    run_ranks(n, [&](Communicator& c) {
      std::vector<Tensor> p = start_params(c.rank());
      AsyncParameterServer ps(c, p, sgd_update(lr), {.staleness = 0});
      ps.pull();
      for (int s = 0; s < steps; ++s) {
        // A slow rank 1 makes the arrival order differ from the rank order.
        if (c.rank() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        versions[size_t(c.rank())].push_back(ps.step(make_grads(p, c.rank(), s)));
      }
      ps.finish();
      if (c.rank() == 0) {
        max_staleness = ps.stats().max;
        server_same = true;
        for (size_t i = 0; i < p.size(); ++i) server_same = server_same && same_bits(ps.server_params()[i], p[i]);
      }
      ssp[size_t(c.rank())] = p;
    });
    CHECK(max_staleness == 0);
    CHECK(server_same);
    for (int r = 0; r < n; ++r)
      for (int s = 0; s < steps; ++s) CHECK(versions[size_t(r)][size_t(s)] == s + 1);  // every clock, in lock step
    for (int r = 0; r < n; ++r)
      for (size_t i = 0; i < sync[size_t(r)].size(); ++i) CHECK(same_bits(sync[size_t(r)][i], ssp[size_t(r)][i]));
  }
}

TEST_CASE("async ps: a bound S is never exceeded, with a slow worker", "[parallel][async_ps]") {
  const int n = 3, steps = 25;
  for (int bound : {1, 2}) {
    INFO("S = " << bound);
    StalenessStats stats;
    std::mutex mu;
    std::vector<int64_t> worst_lead(size_t(n), 0);  // clock - version a worker saw
    run_ranks(n, [&](Communicator& c) {
      std::vector<Tensor> p = start_params(c.rank());
      AsyncParameterServer ps(c, p, sgd_update(0.01), {.staleness = bound});
      ps.pull();
      int64_t lead = 0;
      for (int s = 0; s < steps; ++s) {
        if (c.rank() == 2) std::this_thread::sleep_for(std::chrono::milliseconds(3));  // the straggler
        const int64_t v = ps.step(make_grads(p, c.rank(), s));
        lead = std::max(lead, int64_t(s + 1) - v);
      }
      ps.finish();
      std::lock_guard lock(mu);
      worst_lead[size_t(c.rank())] = lead;
      if (c.rank() == 0) stats = ps.stats();
    });
    CHECK(stats.count == n * steps);
    CHECK(stats.max <= bound);
    for (int r = 0; r < n; ++r) CHECK(worst_lead[size_t(r)] <= bound);
    // The fast workers did run ahead of the straggler, as far as the bound lets them.
    CHECK(std::max(worst_lead[0], worst_lead[1]) == bound);
  }
}

TEST_CASE("async ps: fully asynchronous SGD converges on least squares", "[parallel][async_ps]") {
  // Each worker draws its own x (8) and fits y = x . w_true; loss = mean (x . w - y)^2.
  const int n = 3, dim = 8, batch = 16, steps = 150;
  Generator truth_gen(7);
  const Tensor w_true = randn({dim}, {}, truth_gen);
  auto loss_of = [&](const Tensor& w) {
    Generator gen(99);
    const Tensor x = randn({256, dim}, {}, gen);
    double sum = 0;
    for (int64_t i = 0; i < 256; ++i) {
      double e = 0;
      for (int k = 0; k < dim; ++k) e += x.data<float>()[i * dim + k] * (w.data<float>()[k] - w_true.data<float>()[k]);
      sum += e * e;
    }
    return sum / 256;
  };
  Tensor final_w;
  StalenessStats stats;
  run_ranks(n, [&](Communicator& c) {
    std::vector<Tensor> w = {zeros({dim})};
    AsyncParameterServer ps(c, w, sgd_update(0.1 * n), {.staleness = -1});
    ps.pull();
    Generator gen(500 + uint64_t(c.rank()));
    for (int s = 0; s < steps; ++s) {
      if (c.rank() == 1 && s % 10 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      const Tensor x = randn({batch, dim}, {}, gen);
      Tensor g = zeros({dim});
      for (int i = 0; i < batch; ++i) {
        double e = 0;
        for (int k = 0; k < dim; ++k)
          e += x.data<float>()[i * dim + k] * (w[0].data<float>()[k] - w_true.data<float>()[k]);
        for (int k = 0; k < dim; ++k) g.data<float>()[k] += float(2 * e * x.data<float>()[i * dim + k] / batch);
      }
      ps.step({g});
    }
    ps.finish();
    if (c.rank() == 0) {
      final_w = ps.server_params()[0].clone();
      stats = ps.stats();
    }
  });
  INFO("start loss " << loss_of(zeros({dim})) << ", final loss " << loss_of(final_w));
  CHECK(loss_of(zeros({dim})) > 1.0);
  CHECK(loss_of(final_w) < 1e-4);
  CHECK(stats.count == n * steps);
}

TEST_CASE("async ps: stats count every push; the trace shows each apply", "[parallel][async_ps]") {
  const int n = 3, steps = 10;
  trace::clear();
  trace::enable();
  StalenessStats stats;
  run_ranks(n, [&](Communicator& c) {
    std::vector<Tensor> p = start_params(c.rank());
    AsyncParameterServer ps(c, p, sgd_update(0.01), {.staleness = -1});
    ps.pull();
    const int mine = steps + c.rank();  // uneven: workers leave at different clocks
    for (int s = 0; s < mine; ++s) ps.step(make_grads(p, c.rank(), s));
    ps.finish();
    if (c.rank() == 0) stats = ps.stats();
  });
  trace::enable(false);
  const int64_t pushes = n * steps + (0 + 1 + 2);
  CHECK(stats.count == pushes);
  int64_t in_histogram = 0, sum = 0;
  for (size_t s = 0; s < stats.histogram.size(); ++s) {
    in_histogram += stats.histogram[s];
    sum += int64_t(s) * stats.histogram[s];
  }
  CHECK(in_histogram == pushes);
  CHECK(sum == stats.sum);
  CHECK(stats.mean() <= double(stats.max));
  int64_t spans = 0;
  for (const trace::Event& e : trace::events())
    if (e.name == "ps_apply") {
      ++spans;
      CHECK(e.args.find("staleness ") != std::string::npos);
    }
  CHECK(spans == pushes);
  trace::clear();
  // since(): an epoch's share.
  StalenessStats a, b;
  a.add(0);
  a.add(2);
  b = a;
  b.add(1);
  b.add(2);
  const StalenessStats d = b.since(a);
  CHECK(d.count == 2);
  CHECK(d.sum == 3);
  CHECK(d.max == 2);
}

TEST_CASE("async ps: a model's parameters (requiring gradients) train through it", "[parallel][async_ps]") {
  // The server copies the parameters outside autograd and writes its copies in place.
  const int n = 2;
  std::vector<std::vector<float>> after(static_cast<size_t>(n));
  run_ranks(n, [&](Communicator& c) {
    Generator gen(3);
    std::vector<Tensor> p = {randn({4, 3}, {}, gen).requires_grad_(), randn({3}, {}, gen).requires_grad_()};
    AsyncParameterServer ps(c, p, sgd_update(0.5), {.staleness = 0});
    ps.pull();
    for (int s = 0; s < 3; ++s) ps.step({ones({4, 3}), ones({3})});
    ps.finish();
    after[size_t(c.rank())] = p[1].detach().to_vector<float>();
    try {
      ps.pull();
      after[size_t(c.rank())].clear();  // (a pull after finish must throw)
    } catch (const Error&) {
    }
  });
  Generator gen(3);
  randn({4, 3}, {}, gen);
  const std::vector<float> start = randn({3}, {}, gen).to_vector<float>();
  for (int r = 0; r < n; ++r)
    for (size_t i = 0; i < 3; ++i) CHECK(after[size_t(r)][i] == Approx(start[i] - 3 * 0.5f));  // lr/n * (n ones) per step
}

TEST_CASE("async ps: a failing server update reaches the workers as an error, not a hang", "[parallel][async_ps]") {
  const ServerUpdate failing = [](const std::vector<Tensor>&, const std::vector<Tensor>&, int, int) {
    throw Error("the update blew up");
  };
  for (int bound : {-1, 0}) {
    INFO("S = " << bound);
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH(run_ranks(2,
                                [&](Communicator& c) {
                                  std::vector<Tensor> p = start_params(0);
                                  AsyncParameterServer ps(c, p, failing, {.staleness = bound});
                                  ps.pull();
                                  for (int s = 0; s < 5; ++s) ps.step(make_grads(p, c.rank(), s));
                                  ps.finish();
                                },
                                std::chrono::milliseconds(20000)),
                      Catch::Matchers::Contains("the update blew up"));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));  // not the timeout
  }
}

TEST_CASE("async ps: a rank that fails mid-training stops the others at once, not at the timeout",
          "[parallel][async_ps]") {
  for (int failing : {0, 1}) {  // the server's own rank, then a worker
    INFO("rank " << failing << " fails");
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH(run_ranks(3,
                                [&](Communicator& c) {
                                  std::vector<Tensor> p = start_params(0);
                                  AsyncParameterServer ps(c, p, sgd_update(0.01), {.staleness = 1});
                                  ps.pull();
                                  for (int s = 0; s < 50; ++s) {
                                    if (c.rank() == failing && s == 3) throw Error("rank fell over");
                                    ps.step(make_grads(p, c.rank(), s));
                                  }
                                  ps.finish();
                                },
                                std::chrono::milliseconds(20000)),
                      // The first error run_ranks sees is the failing rank's own or another
                      // rank's, naming it: its ps aborted the group while unwinding.
                      Catch::Matchers::Contains("rank fell over") ||
                          Catch::Matchers::Contains(detail::str("rank ", failing,
                                                                " left the parameter server with an error")));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
  }
}

TEST_CASE("async ps: skip_nonfinite drops an overflowed gradient, or with S = 0 its whole clock",
          "[parallel][async_ps]") {
  const double lr = 0.1;
  const int steps = 4, bad_step = 2, n = 2;
  // Rank 1's gradient at bad_step holds an inf (a float16 worker's overflow, unscaled).
  const auto grads_of = [&](const std::vector<Tensor>& p, int rank, int step, bool zero_bad_clock) {
    std::vector<Tensor> g = make_grads(p, rank, step);
    if (step == bad_step && zero_bad_clock) return std::vector<Tensor>{zeros_like(g[0]), zeros_like(g[1])};
    if (step == bad_step && rank == 1) g[1].data<float>()[4] = std::numeric_limits<float>::infinity();
    return g;
  };
  for (int staleness : {0, -1}) {
    INFO("staleness " << staleness);
    // One run: the server's final parameters, and the counts skip_nonfinite reported.
    const auto run = [&](bool wrapped, bool zero_bad_clock) {
      std::vector<Tensor> server;
      std::vector<int> skipped;
      std::mutex mu;
      run_ranks(n, [&](Communicator& c) {
        std::vector<Tensor> p = start_params(c.rank());
        ServerUpdate update = sgd_update(lr);
        if (wrapped) update = skip_nonfinite(update, [&](int count) {
          std::lock_guard lock(mu);
          skipped.push_back(count);
        });
        AsyncParameterServer ps(c, p, update, {.staleness = staleness});
        ps.pull();
        for (int s = 0; s < steps; ++s) ps.step(grads_of(p, c.rank(), s, zero_bad_clock));
        ps.finish();
        if (c.rank() == 0) server = ps.server_params();
      });
      return std::make_pair(server, skipped);
    };
    const auto [params, skipped] = run(true, false);
    REQUIRE(skipped.size() == 1);
    CHECK(skipped[0] == (staleness == 0 ? n : 1));  // the clock of n gradients, or the one push
    for (const Tensor& t : params)
      for (float v : t.to_vector<float>()) CHECK(std::isfinite(v));
    if (staleness == 0) {
      // A skipped clock leaves the parameters as a clock of zero gradients would.
      const auto [reference, none] = run(false, true);
      CHECK(none.empty());
      for (size_t i = 0; i < params.size(); ++i) CHECK(same_bits(params[i], reference[i]));
    }
  }
}
