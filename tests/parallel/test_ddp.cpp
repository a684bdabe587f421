// parallel/ddp: DistributedDataParallel over the threads backend, checked against one
// process on the global batch -- within float tolerance normally, bit for bit in
// deterministic mode -- plus gradient accumulation, uneven inputs, mismatched models,
// a dead rank, bucket assignment, checkpoints and the overlap seen on the timeline.
#include <chrono>
#include <thread>

#include "parallel_helpers.h"

#include "parallel/ddp.h"
#include "parallel/comm_hook.h"
#include "parallel/trace.h"
#include "tensor/raw.h"

using namespace weft;
using namespace weft::parallel;
using Catch::Matchers::Contains;
using weft::test::make_tiny_mlp;
using weft::test::max_param_diff;
using weft::test::require_no_errors;
using weft::test::run_on_ranks;
using weft::test::shard;
using weft::test::tiny_batch;

namespace {

Tensor ce(const Tensor& out, const Tensor& y) { return nn::cross_entropy(out, y); }

// 128 bytes per bucket: the tiny MLP (0.weight 192 B, 0.bias 32 B, 2.weight 96 B,
// 2.bias 12 B) then needs three buckets, so ordering between buckets is exercised.
constexpr double kSmallBucketsMb = 128.0 / (1024 * 1024);

// The rank's model: rank 0 starts from `initial`, the others from their own random
// init, which DDP's broadcast must overwrite.
std::shared_ptr<nn::Module> rank_model(const nn::Module& initial, int rank) {
  auto m = make_tiny_mlp();
  if (rank == 0) nn::copy_state(initial, *m);
  return m;
}

// Copies of a module's parameters, to compare after the rank threads are gone.
std::shared_ptr<nn::Module> snapshot(const nn::Module& m) { return nn::replicate(m, make_tiny_mlp, kCPU); }

}  // namespace

TEST_CASE("DDP at world sizes 1-4 trains like one process on the global batch", "[ddp][parallel]") {
  constexpr int kSteps = 4, kBatch = 12;  // 12 splits evenly over 1, 2, 3 and 4 ranks
  for (bool overlap : {true, false})
    for (int n : {1, 2, 3, 4}) {
      DYNAMIC_SECTION("world size " << n << (overlap ? ", overlap" : ", no overlap")) {
        auto initial = make_tiny_mlp();
        auto single = snapshot(*initial);
        optim::SGD opt_single(single->parameters(), {.lr = 0.1, .momentum = 0.9});
        for (int s = 0; s < kSteps; ++s) {
          const auto b = tiny_batch(kBatch, 100 + s);
          opt_single.zero_grad();
          ce((*single)(b.x), b.y).backward();
          opt_single.step();
        }

        std::vector<std::shared_ptr<nn::Module>> results(n);
        require_no_errors(run_on_ranks(n, kDefaultTimeout, [&](std::shared_ptr<Communicator> comm) {
          const int r = comm->rank();
          DistributedDataParallel ddp(rank_model(*initial, r), comm,
                                      {.bucket_cap_mb = kSmallBucketsMb, .overlap = overlap});
          weft::test::ddp_sgd_steps(ddp, kSteps, kBatch, 100, r, n);
          results[r] = snapshot(ddp.module());
        }));
        for (int r = 0; r < n; ++r) {
          INFO("rank " << r);
          CHECK(max_param_diff(*results[r], *single) < 1e-5);
        }
      }
    }
}

TEST_CASE("DDP deterministic mode is bit-identical to the rank-order sum of per-shard gradients",
          "[ddp][parallel]") {
  constexpr int kSteps = 3, kBatch = 12;
  for (int n : {1, 2, 3, 4}) {
    DYNAMIC_SECTION("world size " << n) {
      auto initial = make_tiny_mlp();
      auto single = snapshot(*initial);
      weft::test::rank_order_sgd_steps(*single, kSteps, kBatch, 200, n);

      std::vector<std::shared_ptr<nn::Module>> results(n);
      require_no_errors(run_on_ranks(n, kDefaultTimeout, [&](std::shared_ptr<Communicator> comm) {
        const int r = comm->rank();
        DistributedDataParallel ddp(rank_model(*initial, r), comm,
                                    {.bucket_cap_mb = kSmallBucketsMb, .deterministic = true});
        weft::test::ddp_sgd_steps(ddp, kSteps, kBatch, 200, r, n);
        results[r] = snapshot(ddp.module());
      }));
      for (int r = 0; r < n; ++r) {
        INFO("rank " << r);
        CHECK(weft::test::params_equal(*results[r], *single));
      }
    }
  }
}

TEST_CASE("DDP no_sync accumulates locally; the next backward all-reduces the sum", "[ddp][parallel]") {
  // 2 ranks x 2 micro-batches of 2 samples: the synced gradient is the mean over ranks of
  // (g_a + g_b), each a 2-sample mean -- twice the gradient of the 8-sample mean loss.
  auto initial = make_tiny_mlp();
  auto single = snapshot(*initial);
  const auto b = tiny_batch(8, 42);
  (ce((*single)(b.x), b.y) * 2.0).backward();

  std::vector<std::vector<Tensor>> grads(2);
  require_no_errors(run_on_ranks(2, kDefaultTimeout, [&](std::shared_ptr<Communicator> comm) {
    const int r = comm->rank();
    DistributedDataParallel ddp(rank_model(*initial, r), comm, {.bucket_cap_mb = kSmallBucketsMb});
    const Tensor x = shard(b.x, r, 2), y = shard(b.y, r, 2);  // 4 rows: micro-batches of 2
    {
      auto guard = ddp.no_sync();
      ddp.backward(ce(ddp(x.narrow(0, 0, 2)), y.narrow(0, 0, 2)));
      REQUIRE_THROWS_WITH(ddp.synchronize(), Contains("inside no_sync()"));
    }
    ddp.backward(ce(ddp(x.narrow(0, 2, 2)), y.narrow(0, 2, 2)));
    ddp.synchronize();
    for (const Tensor& p : ddp.module().parameters()) grads[r].push_back(p.grad().clone());
  }));
  const auto want = single->parameters();
  for (int r = 0; r < 2; ++r)
    for (size_t i = 0; i < want.size(); ++i) {
      INFO("rank " << r << " parameter " << i);
      CHECK(allclose(grads[r][i], want[i].grad(), 1e-4, 1e-6));
    }
}

TEST_CASE("DDP with uneven inputs: join() ends every rank together, params stay in sync", "[ddp][parallel]") {
  // Rank r has r + 1 batches. Step s averages the gradients of the ranks that still have
  // a batch; the ranks without one contribute zeros and step all the same.
  constexpr int n = 3, kBatch = 4;
  auto initial = make_tiny_mlp();
  auto single = snapshot(*initial);
  optim::SGD opt_single(single->parameters(), {.lr = 0.1});
  for (int s = 0; s < n; ++s) {
    single->zero_grad();
    const int active = n - s;
    for (int r = s; r < n; ++r) {  // ranks s..n-1 still have batch s
      const auto b = tiny_batch(kBatch, 10 * r + s);
      (ce((*single)(b.x), b.y) * (1.0 / active)).backward();
    }
    opt_single.step();
  }

  std::vector<std::shared_ptr<nn::Module>> results(n);
  std::vector<int> steps(n, 0);
  const auto t0 = std::chrono::steady_clock::now();
  require_no_errors(run_on_ranks(n, Timeout(20'000), [&](std::shared_ptr<Communicator> comm) {
    const int r = comm->rank();
    DistributedDataParallel ddp(rank_model(*initial, r), comm, {.bucket_cap_mb = kSmallBucketsMb});
    optim::SGD opt(ddp.module().parameters(), {.lr = 0.1});
    for (int s = 0;; ++s) {
      const bool has_batch = s < r + 1;
      if (ddp.join(has_batch) == 0) break;
      opt.zero_grad();
      if (has_batch) {
        const auto b = tiny_batch(kBatch, 10 * r + s);
        ddp.backward(ce(ddp(b.x), b.y));
      }
      ddp.synchronize();
      opt.step();
      ++steps[r];
    }
    results[r] = snapshot(ddp.module());
  }));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));  // no rank waited for a timeout
  for (int r = 0; r < n; ++r) {
    INFO("rank " << r);
    CHECK(steps[r] == n);  // the rank with the most batches sets the number of steps
    CHECK(weft::test::params_equal(*results[r], *results[0]));
    CHECK(max_param_diff(*results[r], *single) < 1e-5);
  }
}

TEST_CASE("DDP refuses models that differ across ranks, naming the rank and the parameter", "[ddp][parallel]") {
  auto errors = run_on_ranks(3, Timeout(10'000), [](std::shared_ptr<Communicator> comm) {
    std::shared_ptr<nn::Module> m;
    if (comm->rank() == 0) m = make_tiny_mlp();
    if (comm->rank() == 1)  // a last layer of 4 outputs instead of 3
      m = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
          std::make_shared<nn::Linear>(6, 8), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(8, 4)});
    if (comm->rank() == 2)  // no last layer at all
      m = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
          std::make_shared<nn::Linear>(6, 8), std::make_shared<nn::ReLU>()});
    DistributedDataParallel ddp(m, comm);
  });
  for (int r = 0; r < 3; ++r) {
    INFO("rank " << r);  // every rank reaches the same verdict
    CHECK_THAT(errors[r], Contains("rank 1 has parameter 2.weight of shape [4,8], rank 0 has [3,8]") &&
                              Contains("rank 1 has parameter 2.bias of shape [4], rank 0 has [3]") &&
                              Contains("rank 2 has no parameter 2.weight (rank 0 has [3,8])"));
  }
}

TEST_CASE("DDP: a rank that dies makes the others fail with the communicator's timeout", "[ddp][parallel]") {
  const auto t0 = std::chrono::steady_clock::now();
  auto errors = run_on_ranks(2, Timeout(300), [](std::shared_ptr<Communicator> comm) {
    DistributedDataParallel ddp(make_tiny_mlp(), comm);
    if (comm->rank() == 1) return;  // dies silently after construction
    const auto b = tiny_batch(4, 1);
    ddp.backward(ce(ddp(b.x), b.y));
    ddp.synchronize();
  });
  CHECK_THAT(errors[0], Contains("allreduce") && Contains("rank 1 did not arrive within 300 ms"));
  CHECK(errors[1].empty());
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
}

TEST_CASE("DDP: a rank that stalls mid-training fails the others within the timeout, naming the collective",
          "[ddp][parallel]") {
  // Rank 2 trains a step, then sleeps through step 1: ranks 0 and 1 launch their bucket
  // all-reduces during backward and wait in synchronize() until the 300 ms timeout,
  // which must name the collective, its sequence number and the missing rank.
  using Catch::Matchers::Matches;
  const auto t0 = std::chrono::steady_clock::now();
  auto errors = run_on_ranks(3, Timeout(300), [](std::shared_ptr<Communicator> comm) {
    const int r = comm->rank();
    DistributedDataParallel ddp(make_tiny_mlp(), comm, {.bucket_cap_mb = kSmallBucketsMb});
    optim::SGD opt(ddp.module().parameters(), {.lr = 0.1});
    for (int s = 0; s < 3; ++s) {
      if (r == 2 && s == 1) std::this_thread::sleep_for(std::chrono::milliseconds(900));
      const auto b = tiny_batch(6, s);
      opt.zero_grad();
      ddp.backward(ce(ddp(shard(b.x, r, 3)), shard(b.y, r, 3)));
      ddp.synchronize();
      opt.step();
    }
  });
  for (int r = 0; r < 2; ++r) {
    INFO("rank " << r << ": " << errors[r]);
    CHECK_THAT(errors[r], Matches(".*allreduce #[0-9]+: rank 2 did not arrive within 300 ms.*"));
  }
  CHECK_FALSE(errors[2].empty());  // when it wakes up, the group is broken: it fails too
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
}

TEST_CASE("Gradient buckets: reverse registration order, capped in bytes", "[ddp][parallel]") {
  using Buckets = std::vector<std::vector<size_t>>;
  // The tiny MLP's parameters in bytes: 0.weight, 0.bias, 2.weight, 2.bias.
  const std::vector<int64_t> bytes{192, 32, 96, 12};
  CHECK(assign_buckets(bytes, 128) == Buckets{{3, 2}, {1}, {0}});  // 108 B, then 0.bias would make 140
  CHECK(assign_buckets(bytes, 1 << 20) == Buckets{{3, 2, 1, 0}});
  CHECK(assign_buckets(bytes, 1) == Buckets{{3}, {2}, {1}, {0}});  // too big for the cap: one each
  CHECK(assign_buckets({10, 1000, 10}, 100) == Buckets{{2}, {1}, {0}});
  REQUIRE_THROWS_WITH(assign_buckets(bytes, 0), Contains("must be positive"));

  require_no_errors(run_on_ranks(1, kDefaultTimeout, [&](std::shared_ptr<Communicator> comm) {
    DistributedDataParallel ddp(make_tiny_mlp(), comm, {.bucket_cap_mb = kSmallBucketsMb});
    REQUIRE(ddp.buckets().size() == 3);
    CHECK(ddp.buckets()[0].indices() == std::vector<size_t>{3, 2});
    CHECK(ddp.buckets()[0].numel() == 3 + 24);
    CHECK(ddp.buckets()[2].bytes() == 192);
  }));
}

TEST_CASE("Gradient buckets: one dtype per bucket", "[ddp][parallel]") {
  using Buckets = std::vector<std::vector<size_t>>;
  const std::vector<int64_t> bytes{96, 16, 48, 6};
  // A bfloat16 model with a float32 last bias: the dtype change starts a bucket.
  CHECK(assign_buckets(bytes, 1 << 20, {kBFloat16, kBFloat16, kBFloat16, kFloat32}) == Buckets{{3}, {2, 1, 0}});
  CHECK(assign_buckets(bytes, 1 << 20, {kBFloat16, kBFloat16, kBFloat16, kBFloat16}) == Buckets{{3, 2, 1, 0}});
  REQUIRE_THROWS_WITH(assign_buckets(bytes, 1 << 20, {kFloat32}), Contains("1 dtypes for 4 parameters"));
  REQUIRE_THROWS_WITH(GradientBucket({0, 1}, {zeros({2}, {.dtype = kBFloat16}), zeros({2})}),
                      Contains("one bucket holds one dtype, got bfloat16 and float32"));
  REQUIRE_THROWS_WITH(GradientBucket({0}, {zeros({2}, {.dtype = kInt64})}), Contains("got int64"));
}

TEST_CASE("DDP on a 16-bit model: 16-bit buckets and all-reduces, the same parameters everywhere, near float32",
          "[ddp][parallel]") {
  constexpr int kSteps = 3, kBatch = 12;
  for (DType dt : {kBFloat16, kFloat16})
    for (int n : {2, 3}) {
      DYNAMIC_SECTION(dtype_name(dt) << ", " << n << " ranks") {
        manual_seed(7);  // one start whatever ran before
        auto initial = make_tiny_mlp();
        std::vector<std::vector<float>> got(static_cast<size_t>(n)), exact(static_cast<size_t>(n));
        std::vector<CommStats> stats(static_cast<size_t>(n));
        std::vector<std::string> bucket_dtypes(static_cast<size_t>(n));
        auto flat = [](nn::Module& m) {
          std::vector<float> v;
          for (const Tensor& p : m.parameters())
            for (float x : raw::to_dtype(p, kFloat32).contiguous().to_vector<float>()) v.push_back(x);
          return v;
        };
        require_no_errors(run_on_ranks(n, kDefaultTimeout, [&](std::shared_ptr<Communicator> comm) {
          const int r = comm->rank();
          for (bool half : {false, true}) {
            auto m = rank_model(*initial, r);
            if (half) m->to(dt);  // SGD keeps float32 master weights of the 16-bit parameters
            DistributedDataParallel ddp(m, comm, {.bucket_cap_mb = kSmallBucketsMb});
            optim::SGD opt(ddp.module().parameters(), {.lr = 0.1, .momentum = 0.9});
            for (int step = 0; step < kSteps; ++step) {  // ddp_sgd_steps, with the input in the model's dtype
              const auto b = tiny_batch(kBatch, 100 + step);
              opt.zero_grad();
              const Tensor x = shard(b.x, r, n);
              ddp.backward(ce(ddp(half ? raw::to_dtype(x, dt) : x), shard(b.y, r, n)));
              ddp.synchronize();
              opt.step();
            }
            (half ? got : exact)[size_t(r)] = flat(ddp.module());
            if (!half) continue;
            stats[size_t(r)] = ddp.comm_hook().stats();
            for (const GradientBucket& b : ddp.buckets()) bucket_dtypes[size_t(r)] += dtype_name(b.flat().dtype());
          }
        }));
        for (int r = 1; r < n; ++r) CHECK(got[size_t(r)] == got[0]);  // 16-bit sums: the same bits everywhere
        double worst = 0;
        for (size_t i = 0; i < got[0].size(); ++i) worst = std::max(worst, double(std::abs(got[0][i] - exact[0][i])));
        // 3 SGD steps (lr 0.1, momentum 0.9) on 16-bit weights, activations and gradients:
        // near float32, though a unit whose ReLU flips in 16 bits moves further than rounding.
        CHECK(worst < 0.05);
        CHECK(worst > 0);  // it did run in 16 bits
        // 166 bytes in 16 bits: two buckets of at most 128 (float32 needed three).
        CHECK(bucket_dtypes[0] == std::string(dtype_name(dt)) + dtype_name(dt));
        CHECK(stats[0].compression() == 2.0);  // the all-reduces send 16-bit values
      }
    }
}

TEST_CASE("DDP on a 16-bit model: a mean float16 could not hold as a sum; deterministic mode rounds once",
          "[ddp][parallel]") {
  // Gradients set by hand (no backward): synchronize() reduces whatever .grad holds.
  for (bool deterministic : {false, true})
    for (int n : {2, 3}) {
      DYNAMIC_SECTION((deterministic ? "deterministic, " : "") << n << " ranks") {
        auto value = [](int r, int64_t i) { return 33000.0 + 1000.0 * r + 7.3 * double(i); };  // sums overflow fp16
        std::vector<std::vector<float>> got(static_cast<size_t>(n));
        require_no_errors(run_on_ranks(n, kDefaultTimeout, [&](std::shared_ptr<Communicator> comm) {
          const int r = comm->rank();
          auto m = make_tiny_mlp();
          m->to(kFloat16);
          DistributedDataParallel ddp(m, comm, {.deterministic = deterministic});
          std::vector<double> v(6 * 8);
          for (int64_t i = 0; i < 48; ++i) v[size_t(i)] = value(r, i);
          for (Tensor p : ddp.module().parameters())
            p.set_grad(raw::to_dtype(tensor(std::vector<double>(v.begin(), v.begin() + p.numel()), p.shape(),
                                            {.dtype = kFloat64}), kFloat16));
          ddp.synchronize();
          got[size_t(r)] = raw::to_dtype(ddp.module().parameters()[0].grad(), kFloat32).to_vector<float>();
        }));
        for (int64_t i = 0; i < 48; ++i) {
          float sum = 0;  // rank order, float32, of the float16 inputs
          for (int r = 0; r < n; ++r) sum += raw::to_dtype(full({}, value(r, i), {.dtype = kFloat16}), kFloat32).item<float>();
          const float mean = sum / float(n);
          for (int r = 0; r < n; ++r) {
            const float g = got[size_t(r)][size_t(i)];
            INFO("rank " << r << ", value " << i);
            REQUIRE(std::isfinite(g));
            if (deterministic)  // the float32 mean rounded once
              CHECK(g == raw::to_dtype(full({}, mean, {.dtype = kFloat16}), kFloat32).item<float>());
            else  // each value divided by n, summed, rounded a few times: within a few units of 2^-11
              CHECK(std::abs(g - mean) <= 4 * std::ldexp(mean, -11));
          }
        }
      }
    }
}

TEST_CASE("DDP refuses a compressing comm hook on a 16-bit model", "[ddp][parallel]") {
  require_no_errors(run_on_ranks(1, kDefaultTimeout, [&](std::shared_ptr<Communicator> comm) {
    auto m = make_tiny_mlp();
    m->to(kBFloat16);
    CHECK_THROWS_WITH(DistributedDataParallel(m, comm, {.comm_hook = make_comm_hook("powersgd:2")}),
                      Contains("compresses float32 gradients") && Contains("bfloat16 parameters"));
  }));
}

TEST_CASE("DDP checkpoints from rank 0 have the unwrapped model's keys", "[ddp][parallel]") {
  test::TempDir dir;
  const std::string path = dir.file("ddp.safetensors");
  std::vector<std::shared_ptr<nn::Module>> results(2);
  require_no_errors(run_on_ranks(2, kDefaultTimeout, [&](std::shared_ptr<Communicator> comm) {
    const int r = comm->rank();
    DistributedDataParallel ddp(make_tiny_mlp(), comm);
    optim::SGD opt(ddp.module().parameters(), {.lr = 0.1});
    const auto b = tiny_batch(8, 3);
    opt.zero_grad();
    ddp.backward(ce(ddp(shard(b.x, r, 2)), shard(b.y, r, 2)));
    ddp.synchronize();
    opt.step();
    if (r == 0) optim::save_checkpoint(path, ddp.module(), &opt, {{"world_size", "2"}});
    results[r] = snapshot(ddp.module());
  }));
  auto plain = make_tiny_mlp();  // no DDP: loading is strict about the keys
  optim::SGD opt(plain->parameters(), {.lr = 0.1});
  CHECK(optim::load_checkpoint(path, *plain, &opt).at("world_size") == "2");
  CHECK(weft::test::params_equal(*plain, *results[1]));
}

TEST_CASE("DDP timeline: buckets are launched during backward, only with overlap on", "[ddp][parallel]") {
  for (bool overlap : {true, false}) {
    trace::clear();
    trace::enable();
    require_no_errors(run_on_ranks(2, kDefaultTimeout, [&](std::shared_ptr<Communicator> comm) {
      DistributedDataParallel ddp(make_tiny_mlp(), comm, {.bucket_cap_mb = kSmallBucketsMb, .overlap = overlap});
      const auto b = tiny_batch(4, 9);
      ddp.backward(ce(ddp(b.x), b.y));
      ddp.synchronize();
    }));
    trace::enable(false);
    const auto events = trace::events();
    for (int rank = 0; rank < 2; ++rank) {
      double bw_start = -1, bw_end = -1;
      for (const auto& e : events)
        if (e.pid == rank && e.name == "backward") bw_start = e.ts_us, bw_end = e.ts_us + e.dur_us;
      REQUIRE(bw_start >= 0);
      int launches = 0, inside = 0, allreduces = 0;
      for (const auto& e : events) {
        if (e.pid != rank) continue;
        if (e.name == "allreduce") ++allreduces;
        if (e.name != "launch bucket") continue;
        ++launches;
        if (e.ts_us >= bw_start && e.ts_us <= bw_end) ++inside;
      }
      INFO("rank " << rank << (overlap ? " overlap" : " no overlap"));
      CHECK(launches == 3);
      CHECK(allreduces == 3);
      // Overlap: bucket 0 (the last layer) is launched while backward still has the first
      // layer to do. Without overlap, every launch waits for synchronize().
      CHECK(inside == (overlap ? 3 : 0));
    }
  }
  trace::clear();
}
