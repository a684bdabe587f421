// The pipeline executor with stages as processes, run by every process of
//   mpirun -np N build/tests/weft_mpi_tests
// Process r is stage r of an N-stage pipeline over the MPI communicator. Every process
// builds the same model from the same seed, so each can compute the one-device reference
// itself and check its own stage's parameters against it, bit for bit.
#include <catch2/catch.hpp>

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

}  // namespace

TEST_CASE("mpi pipeline: stages as processes train bit for bit like one device", "[pipeline][mpi]") {
  auto comm = weft::test::mpi_test_world();
  const int p = comm->size(), s = comm->rank();
  if (p < 2) {
    WARN("one process: no pipeline to run");
    return;
  }
  ThreadLimit one(1);
  struct Pin {  // the same GEMM kernels in every process (see test_mpi_ddp.cpp)
    std::string before = gemm_backend_setting();
    Pin() { set_gemm_backend("eigen"); }
    ~Pin() { set_gemm_backend(before); }
  } pin;
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
