// DistributedDataParallel over the MPI communicator, run by every process of
//   mpirun -np N build/tests/weft_mpi_tests
// The same checks as the threads backend's (tests/parallel/test_ddp.cpp): N processes
// on shards of a global batch train like one process on the whole batch, bit for bit
// in deterministic mode; plus the per-rank timeline gathered into one Chrome trace.
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>

#include "parallel/ddp.h"
#include "parallel/comm/mpi_communicator.h"
#include "parallel/trace_gather.h"
#include "parallel_helpers.h"

using namespace weft;
using namespace weft::parallel;
using weft::test::make_tiny_mlp;
using weft::test::shard;
using weft::test::tiny_batch;

namespace {

std::shared_ptr<MpiCommunicator> world() { return weft::test::mpi_test_world(); }

Tensor ce(const Tensor& out, const Tensor& y) { return nn::cross_entropy(out, y); }
constexpr double kSmallBucketsMb = 128.0 / (1024 * 1024);  // three buckets for the tiny MLP

// Every process builds the same initial model from the same seed, so each can compute
// the one-process reference itself.
std::shared_ptr<nn::Module> initial_model() {
  manual_seed(1234);
  return make_tiny_mlp();
}

}  // namespace

TEST_CASE("mpi DDP trains like one process on the global batch", "[ddp][mpi]") {
  auto comm = world();
  const int n = comm->size(), r = comm->rank();
  const int64_t batch = 4 * n;
  ThreadLimit one(1);
  // Each process computes the reference itself, other ranks' shards included, and the
  // deterministic mode is compared bit for bit: so every process must run each GEMM on
  // the same backend, and the measured choice -- which two processes may make
  // differently, and the backends round differently -- is pinned (tensor/kernels.h).
  struct Pin {
    std::string before = gemm_backend_setting();
    Pin() { set_gemm_backend("eigen"); }
    ~Pin() { set_gemm_backend(before); }
  } pin;
  for (bool deterministic : {false, true}) {
    auto single = initial_model();
    // Deterministic mode's reference sums the per-shard gradients in rank order.
    weft::test::rank_order_sgd_steps(*single, 3, batch, 300, n);

    auto model = initial_model();
    if (r != 0) model = make_tiny_mlp();  // other ranks start elsewhere: DDP broadcasts rank 0's
    DistributedDataParallel ddp(model, comm, {.bucket_cap_mb = kSmallBucketsMb, .deterministic = deterministic});
    weft::test::ddp_sgd_steps(ddp, 3, batch, 300, r, n);
    INFO("rank " << r << (deterministic ? ", deterministic" : ""));
    if (deterministic) CHECK(weft::test::params_equal(*model, *single));
    else CHECK(weft::test::max_param_diff(*model, *single) < 1e-5);
  }
}

TEST_CASE("mpi DDP: uneven inputs end together; the trace of every rank lands in one file", "[ddp][mpi]") {
  auto comm = world();
  const int n = comm->size(), r = comm->rank();
  trace::clear();
  trace::enable();
  auto model = initial_model();
  DistributedDataParallel ddp(model, comm, {.bucket_cap_mb = kSmallBucketsMb});
  optim::SGD opt(model->parameters(), {.lr = 0.1});
  int steps = 0;
  for (int s = 0;; ++s) {
    const bool has_batch = s < r + 1;  // rank r has r + 1 batches
    if (ddp.join(has_batch) == 0) break;
    opt.zero_grad();
    if (has_batch) {
      const auto b = tiny_batch(4, 10 * r + s);
      ddp.backward(ce(ddp(b.x), b.y));
    }
    ddp.synchronize();
    opt.step();
    ++steps;
  }
  CHECK(steps == n);

  test::TempDir dir;  // only rank 0's is written: the others pass their own, unused
  const std::string path = dir.file("trace.json");
  gather_chrome_trace(*comm, path);
  trace::enable(false);
  trace::clear();
  if (r == 0) {
    std::ifstream in(path);
    REQUIRE(in);
    const auto doc = nlohmann::json::parse(in);
    std::vector<int> backward(static_cast<size_t>(n), 0), allreduce(static_cast<size_t>(n), 0);
    for (const auto& e : doc["traceEvents"]) {
      if (e["ph"] != "X") continue;
      const int pid = e["pid"].get<int>();
      REQUIRE(pid >= 0);
      REQUIRE(pid < n);
      CHECK(e["ts"].get<double>() >= 0);
      if (e["name"] == "backward") ++backward[static_cast<size_t>(pid)];
      if (e["name"] == "allreduce") ++allreduce[static_cast<size_t>(pid)];
    }
    for (int q = 0; q < n; ++q) {
      INFO("rank " << q);
      CHECK(backward[static_cast<size_t>(q)] == q + 1);  // a backward per batch it had
      CHECK(allreduce[static_cast<size_t>(q)] >= 3 * n);  // 3 buckets a step, and the joins
    }
  }
  comm->barrier();
}

TEST_CASE("mpi DDP: a comm hook resumed from the gathered state goes on bit for bit", "[ddp][mpi][comm_hooks]") {
  auto comm = world();
  const int n = comm->size(), r = comm->rank();
  constexpr int kSaved = 3, kSteps = 5;
  for (const char* spec : {"powersgd:2,min_rate=1", "topk:0.2"}) {
    INFO(spec << ", rank " << r);
    auto whole = initial_model();
    DistributedDataParallel a(whole, comm, {.bucket_cap_mb = kSmallBucketsMb, .comm_hook = make_comm_hook(spec)});
    optim::SGD sgd_a(whole->parameters(), {.lr = 0.1});
    weft::test::ddp_steps(a, sgd_a, 0, kSaved, 4 * n, 700, r, n);
    // Every process gets every rank's state, as rank 0 would save it.
    const nn::NamedTensors state = a.gather_comm_hook_state();
    CHECK(state.size() == a.comm_hook().state_dict().size() * static_cast<size_t>(n));
    auto resumed = nn::replicate(*whole, make_tiny_mlp, kCPU);
    weft::test::ddp_steps(a, sgd_a, kSaved, kSteps, 4 * n, 700, r, n);

    DistributedDataParallel b(resumed, comm, {.bucket_cap_mb = kSmallBucketsMb, .comm_hook = make_comm_hook(spec)});
    b.load_comm_hook_state(state);
    optim::SGD sgd_b(resumed->parameters(), {.lr = 0.1});
    weft::test::ddp_steps(b, sgd_b, kSaved, kSteps, 4 * n, 700, r, n);
    CHECK(weft::test::params_equal(*resumed, *whole));
  }
}
