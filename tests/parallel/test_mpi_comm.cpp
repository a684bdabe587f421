// Comm hooks and the asynchronous parameter server over MPI, run by every process of
//   mpirun -np N build/tests/weft_mpi_tests
// The threads backend's checks (test_comm_hooks.cpp, test_async_ps.cpp) across
// processes: every rank ends with the same parameters, a bf16 hook stays within its
// rounding of the exact run, and the asynchronous server at staleness 0 is the
// synchronous ParameterServer bit for bit.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>

#include "parallel/algorithms/async_parameter_server.h"
#include "parallel/algorithms/parameter_server.h"
#include "parallel/comm/mpi_communicator.h"
#include "parallel/comm_hook.h"
#include "parallel/ddp.h"
#include "parallel_helpers.h"
#include "tensor/raw.h"

using namespace weft;
using namespace weft::parallel;

namespace {

std::shared_ptr<MpiCommunicator> world() { return weft::test::mpi_test_world(); }

std::vector<float> flat_params(const nn::Module& m) {
  std::vector<float> out;
  for (const Tensor& p : m.parameters()) {
    const std::vector<float> v = p.detach().to_vector<float>();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

// Every rank's v (all of the same length), rank q's at [q * v.size(), (q + 1) * v.size()).
std::vector<float> gathered(Communicator& c, const std::vector<float>& v) {
  Tensor all = empty({static_cast<int64_t>(v.size()) * c.size()});
  c.allgather(tensor(v), all);
  return all.to_vector<float>();
}

// Whether every rank's v equals rank 0's, bit for bit.
bool same_everywhere(Communicator& c, const std::vector<float>& v) {
  const std::vector<float> all = gathered(c, v);
  for (int q = 1; q < c.size(); ++q)
    if (std::memcmp(all.data() + q * v.size(), all.data(), v.size() * sizeof(float)) != 0) return false;
  return true;
}

}  // namespace

TEST_CASE("mpi DDP with comm hooks: the same parameters on every rank, bf16 near the exact run",
          "[ddp][mpi][comm_hooks]") {
  auto comm = world();
  const int n = comm->size(), r = comm->rank();
  ThreadLimit one(1);
  std::vector<float> exact;
  for (const char* spec : {"none", "bf16", "fp16", "powersgd:2,min_rate=1", "topk:0.3"}) {  // min_rate 1: the tiny matrices compress
    INFO("rank " << r << ", hook " << spec);
    manual_seed(1234);
    auto model = weft::test::make_tiny_mlp();
    DistributedDataParallel ddp(model, comm,
                                {.bucket_cap_mb = 128.0 / (1024 * 1024), .comm_hook = make_comm_hook(spec)});
    weft::test::ddp_sgd_steps(ddp, 3, 4 * n, 300, r, n);
    const std::vector<float> mine = flat_params(ddp.module());
    CHECK(same_everywhere(*comm, mine));
    CHECK(ddp.comm_hook().stats().steps == 3);
    if (std::string(spec) == "none") exact = mine;
    if (std::string(spec) == "bf16" || std::string(spec) == "fp16") {
      double worst = 0;
      for (size_t i = 0; i < mine.size(); ++i) worst = std::max(worst, double(std::abs(mine[i] - exact[i])));
      CHECK(worst < 2e-3);  // 3 SGD steps (lr 0.1) on gradients rounded to 16 bits
      if (n > 1) CHECK(ddp.comm_hook().stats().compression() > 1.8);
    }
  }
}

TEST_CASE("mpi DDP on a bfloat16 model: 16-bit all-reduces, the same parameters on every rank",
          "[ddp][mpi][comm_hooks]") {
  auto comm = world();
  const int n = comm->size(), r = comm->rank();
  ThreadLimit one(1);
  manual_seed(1234);
  auto model = weft::test::make_tiny_mlp();
  model->to(kBFloat16);
  DistributedDataParallel ddp(model, comm, {.bucket_cap_mb = 128.0 / (1024 * 1024)});
  optim::SGD opt(ddp.module().parameters(), {.lr = 0.1, .momentum = 0.9});
  for (int s = 0; s < 3; ++s) {
    const auto b = weft::test::tiny_batch(4 * n, 300 + s);
    opt.zero_grad();
    const Tensor x = raw::to_dtype(weft::test::shard(b.x, r, n), kBFloat16);
    ddp.backward(nn::cross_entropy(ddp(x), weft::test::shard(b.y, r, n)));
    ddp.synchronize();
    opt.step();
  }
  std::vector<float> mine;
  for (const Tensor& p : ddp.module().parameters())
    for (float v : raw::to_dtype(p, kFloat32).contiguous().to_vector<float>()) mine.push_back(v);
  INFO("rank " << r);
  CHECK(same_everywhere(*comm, mine));
  for (const GradientBucket& b : ddp.buckets()) CHECK(b.flat().dtype() == kBFloat16);
  if (n > 1) CHECK(ddp.comm_hook().stats().compression() == 2.0);
}

TEST_CASE("mpi async parameter server: staleness 0 is ParameterServer bit for bit; a bound holds",
          "[parallel][mpi][async_ps]") {
  auto comm = world();
  const int r = comm->rank();
  auto start = [&] {
    Generator gen(100 + uint64_t(r));  // rank-dependent: pull() must replace them
    return std::vector<Tensor>{randn({37}, {}, gen), randn({5, 3}, {}, gen)};
  };
  auto grads_at = [&](const std::vector<Tensor>& p, int s) {
    Generator gen(1000 * uint64_t(r) + uint64_t(s));
    std::vector<Tensor> g;
    for (const Tensor& t : p) g.push_back(randn(t.shape(), {}, gen) + t * (0.3 * (r + 1)));
    return g;
  };
  std::vector<Tensor> sync = start();
  {
    ParameterServer ps(*comm, sync);
    ps.pull();
    for (int s = 0; s < 5; ++s) ps.step(grads_at(sync, s), 0.1);
  }
  std::vector<Tensor> ssp = start();
  {
    AsyncParameterServer ps(*comm, ssp, sgd_update(0.1), {.staleness = 0});
    ps.pull();
    for (int s = 0; s < 5; ++s) ps.step(grads_at(ssp, s));
    ps.finish();
    if (r == 0) CHECK(ps.stats().max == 0);
  }
  for (size_t i = 0; i < sync.size(); ++i)
    CHECK(std::memcmp(sync[i].raw_data(), ssp[i].raw_data(), size_t(sync[i].numel()) * sizeof(float)) == 0);

  std::vector<Tensor> bounded = start();
  AsyncParameterServer ps(*comm, bounded, sgd_update(0.01), {.staleness = 1});
  ps.pull();
  int64_t lead = 0;
  for (int s = 0; s < 12; ++s) lead = std::max(lead, int64_t(s + 1) - ps.step(grads_at(bounded, s)));
  ps.finish();
  CHECK(lead <= 1);
  if (r == 0) {
    CHECK(ps.stats().count == 12 * comm->size());
    CHECK(ps.stats().max <= 1);
  }
  comm->barrier();
}
