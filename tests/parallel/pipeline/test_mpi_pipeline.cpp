// The pipeline executor with stages as processes, run by every process of
//   mpirun -np N build/tests/weft_mpi_tests
// Process r is stage r of an N-stage pipeline over the MPI communicator. Every process
// builds the same model from the same seed, so each can compute the one-device reference
// itself and check its own stage's parameters against it, bit for bit.
#include <algorithm>
#include <catch2/catch.hpp>

#include "../../nn/multi_tensor_models.h"
#include "../parallel_helpers.h"
#include "parallel/comm/mpi_communicator.h"
#include "parallel/pipeline/pipeline.h"

using namespace weft;
namespace pp = weft::parallel::pipeline;

namespace {

// Flatten, then four Linear+ReLU blocks and a classifier: 10 layers, enough for 3 stages.
std::shared_ptr<nn::Sequential> model_from_seed() {
  manual_seed(77);
  auto net = std::make_shared<nn::Sequential>();
  net->add<nn::Flatten>();
  net->add<nn::Linear>(12, 16), net->add<nn::ReLU>();
  net->add<nn::Linear>(16, 16), net->add<nn::ReLU>();
  net->add<nn::Linear>(16, 16), net->add<nn::ReLU>();
  net->add<nn::Linear>(16, 16), net->add<nn::ReLU>();
  net->add<nn::Linear>(16, 5);
  return net;
}

Tensor ce(const Tensor& out, const Tensor& y) { return nn::cross_entropy(out, y); }

// The same GEMM kernels in every process (see test_mpi_ddp.cpp), for the test's life.
struct PinGemm {
  std::string before = gemm_backend_setting();
  PinGemm() { set_gemm_backend("eigen"); }
  ~PinGemm() { set_gemm_backend(before); }
};

}  // namespace

TEST_CASE("mpi pipeline: stages as processes train bit for bit like one device", "[pipeline][mpi]") {
  auto comm = weft::test::mpi_test_world();
  const int p = comm->size(), s = comm->rank();
  if (p < 2) {
    WARN("one process: no pipeline to run");
    return;
  }
  ThreadLimit one(1);
  PinGemm pin;
  for (const std::string schedule : {"gpipe", "1f1b"}) {
    const int m = 4;
    auto ref = model_from_seed();
    std::vector<Device> devices;
    for (int k = 0; k < p; ++k) devices.push_back(Device::cpu(k));
    auto sharded = parallel::shard(model_from_seed(), devices);
    pp::PipelineStage stage(comm, sharded->stage(size_t(s)), devices[size_t(s)]);
    optim::AdamW opt(sharded->stage(size_t(s))->parameters(), {.lr = 1e-2});
    optim::AdamW ref_opt(ref->parameters(), {.lr = 1e-2});
    for (int step = 0; step < 3; ++step) {
      Generator g(static_cast<uint64_t>(step));
      Tensor x = randn({8, 3, 4}, {}, g);
      std::vector<int64_t> labels(8);
      for (int i = 0; i < 8; ++i) labels[size_t(i)] = (i + step) % 5;
      Tensor y = tensor(labels);
      stage.train_step(pp::make_schedule(schedule, p, m), s == 0 ? x : Tensor(), s == p - 1 ? y : Tensor(), ce);
      opt.step(), opt.zero_grad();
      for (const auto& [a, b] : pp::microbatch_rows(8, m))
        (ce((*ref)(x.narrow(0, a, b - a)), y.narrow(0, a, b - a)) * (double(b - a) / 8.0)).backward();
      ref_opt.step(), ref_opt.zero_grad();
    }
    // This process's stage against the same layers of the reference.
    const auto mine = sharded->named_parameters();
    const auto want = ref->named_parameters();
    const size_t begin = sharded->first_layers()[size_t(s)];
    const size_t end = s + 1 < p ? sharded->first_layers()[size_t(s) + 1] : sharded->model()->size();
    int checked = 0;
    for (size_t i = 0; i < mine.size(); ++i) {
      const size_t layer = std::stoul(mine[i].first.substr(0, mine[i].first.find('.')));
      if (layer < begin || layer >= end) continue;
      INFO(schedule << " stage " << s << " " << mine[i].first);
      CHECK(equal(mine[i].second.to(kCPU), want[i].second));
      ++checked;
    }
    CHECK(checked > 0);
    comm->barrier();
  }
}

// Issue 18: `mpirun -np 4` is a grid of 2 replicas x 2 stages (rank = replica * 2 +
// stage), split into pipelines and data-parallel groups; -np 2 is one replica of 2
// stages (a data-parallel group of one), -np 3 three replicas of a single stage. Each
// process checks its own chunks against one device that computes every replica's
// microbatched gradient and averages them in rank order.
TEST_CASE("mpi grid: pipeline stages x data-parallel replicas train bit for bit like one device",
          "[pipeline][mpi][grid]") {
  auto world = weft::test::mpi_test_world();
  const int n = world->size(), P = n % 2 == 0 ? 2 : 1, R = n / P;
  const int replica = world->rank() / P, s = world->rank() % P;
  ThreadLimit one(1);
  PinGemm pin;
  auto pipe = world->split(replica, s), data = world->split(s, replica);
  CHECK(pipe->trace_rank() == world->rank());
  for (const auto& [schedule, v] : std::vector<std::pair<std::string, int>>{{"1f1b", 1}, {"zb1", 1}, {"interleaved", 2}}) {
    if (P == 1 && v > 1) continue;  // one stage cannot interleave
    const int m = 4, rows = 8;
    auto ref = model_from_seed();
    std::vector<Device> devices;
    for (int k = 0; k < P; ++k) devices.push_back(Device::cpu(k));
    auto sharded = parallel::shard_interleaved(model_from_seed(), devices, v);
    const auto chunks = parallel::stage_chunks(*sharded, size_t(P), size_t(s));
    pp::PipelineStage stage(pipe, chunks, devices[size_t(s)]);
    stage.set_data_parallel(data, {.bucket_cap_mb = 0.001, .deterministic = R > 2});
    std::vector<Tensor> mine;
    for (const auto& c : chunks)
      for (const Tensor& t : c->parameters()) mine.push_back(t);
    optim::AdamW opt(mine, {.lr = 1e-2});
    optim::AdamW ref_opt(ref->parameters(), {.lr = 1e-2});
    std::vector<Tensor> params = ref->parameters();
    for (int step = 0; step < 2; ++step) {
      Generator g(static_cast<uint64_t>(step));
      Tensor x = randn({rows * R, 3, 4}, {}, g);
      std::vector<int64_t> labels(size_t(rows * R));
      for (int i = 0; i < rows * R; ++i) labels[size_t(i)] = (i + step) % 5;
      Tensor y = tensor(labels);
      const auto sched = pp::make_schedule(schedule, P, m, v);
      stage.train_step(sched, x.narrow(0, replica * rows, rows), y.narrow(0, replica * rows, rows), ce);
      opt.step(), opt.zero_grad();
      std::vector<Tensor> mean(params.size());
      for (int r = 0; r < R; ++r) {
        for (const auto& [a, b] : pp::microbatch_rows(rows, m))
          (ce((*ref)(x.narrow(0, r * rows + a, b - a)), y.narrow(0, r * rows + a, b - a)) * (double(b - a) / rows))
              .backward();
        for (size_t i = 0; i < params.size(); ++i) {
          if (r == 0) mean[i] = params[i].grad().clone();
          else mean[i].add_(params[i].grad());
          params[i].set_grad(Tensor());
        }
      }
      for (size_t i = 0; i < params.size(); ++i) params[i].set_grad(mean[i].div_(double(R)));
      ref_opt.step(), ref_opt.zero_grad();
    }
    // This process's chunks against the same layers of the reference.
    const auto got = sharded->named_parameters();
    const auto want = ref->named_parameters();
    const auto& first = sharded->first_layers();
    auto chunk_of = [&](size_t layer) {
      return size_t(std::upper_bound(first.begin(), first.end(), layer) - first.begin()) - 1;
    };
    int checked = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const size_t layer = std::stoul(got[i].first.substr(0, got[i].first.find('.')));
      if (chunk_of(layer) % size_t(P) != size_t(s)) continue;
      INFO(schedule << " replica " << replica << " stage " << s << " " << got[i].first);
      CHECK(equal(got[i].second.to(kCPU), want[i].second));
      ++checked;
    }
    CHECK(checked > 0);
    world->barrier();
  }
}

// Issue 19: stages passing several tensors per microbatch -- (x, mask) and (x, mask, aux)
// cross the process boundaries, the bool mask forward only -- against one device.
TEST_CASE("mpi pipeline: several tensors per microbatch train bit for bit like one device", "[pipeline][mpi][multi]") {
  auto comm = weft::test::mpi_test_world();
  const int p = comm->size(), s = comm->rank();
  if (p < 2) {
    WARN("one process: no pipeline to run");
    return;
  }
  ThreadLimit one(1);
  PinGemm pin;
  for (const auto& [schedule, v] : std::vector<std::pair<std::string, int>>{{"1f1b", 1}, {"interleaved", 2}}) {
    if (p * v > 4) continue;  // the model's 6 layers; interleaving on 2 stages only
    const int m = 4;
    auto ref = weft::test::make_masked_model();
    std::vector<Device> devices;
    for (int k = 0; k < p; ++k) devices.push_back(Device::cpu(k));
    auto sharded = parallel::shard_interleaved(weft::test::make_masked_model(), devices, v);
    const auto chunks = parallel::stage_chunks(*sharded, size_t(p), size_t(s));
    pp::PipelineStage stage(comm, chunks, devices[size_t(s)]);
    std::vector<Tensor> mine;
    for (const auto& c : chunks)
      for (const Tensor& t : c->parameters()) mine.push_back(t);
    optim::AdamW opt(mine, {.lr = 1e-2});
    optim::AdamW ref_opt(ref->parameters(), {.lr = 1e-2});
    for (int step = 0; step < 2; ++step) {
      const auto b = weft::test::masked_batch(9, uint64_t(step));
      stage.train_step(pp::make_schedule(schedule, p, m, v), s == 0 ? nn::Tensors{b.x, b.mask} : nn::Tensors{},
                       s == p - 1 ? b.y : Tensor(), weft::test::ce_plus_aux);
      opt.step(), opt.zero_grad();
      nn::TransposedWeightScope keep_transposed;  // as each stage keeps Linear's W^T for the step
      for (const auto& [a, e] : pp::microbatch_rows(9, m))
        (weft::test::ce_plus_aux((*ref)({b.x.narrow(0, a, e - a), b.mask.narrow(0, a, e - a)}), b.y.narrow(0, a, e - a)) *
         (double(e - a) / 9.0))
            .backward();
      ref_opt.step(), ref_opt.zero_grad();
    }
    // This process's chunks against the same layers of the reference.
    const auto got = sharded->named_parameters();
    const auto want = ref->named_parameters();
    const auto& first = sharded->first_layers();
    int checked = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const size_t layer = std::stoul(got[i].first.substr(0, got[i].first.find('.')));
      const size_t chunk = size_t(std::upper_bound(first.begin(), first.end(), layer) - first.begin()) - 1;
      if (chunk % size_t(p) != size_t(s)) continue;
      INFO(schedule << " stage " << s << " " << got[i].first);
      CHECK(equal(got[i].second.to(kCPU), want[i].second));
      ++checked;
    }
    CHECK(checked == int(mine.size()));  // every parameter this process holds (a lone AuxTally holds none)
    comm->barrier();
  }
}
