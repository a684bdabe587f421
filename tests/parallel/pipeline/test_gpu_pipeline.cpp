// Pipeline stages on GPUs (issue 18). Skipped, with a message, without a GPU:
// - a stage pair cpu:0 + cuda:0 over the threads backend (a one-GPU machine): the GPU
//   stage stages its messages through host memory;
// - stages on cuda:0 and cuda:1 exchanging activations through NCCL send/recv (needs two
//   GPUs: NCCL does not put two ranks of one communicator on one GPU).
// Both train two steps against one CPU device running the same microbatches; GPU GEMMs
// sum in another order, so the parameters agree within float32 rounding, not bitwise.
#include "../../helpers.h"
#include "../parallel_helpers.h"
#include "pipeline_helpers.h"
#include "cuda/cuda.h"
#include "parallel/comm/nccl_communicator.h"
#include "parallel/pipeline/pipeline.h"
#include "samples/common/models.h"

using namespace weft;
namespace pp = weft::parallel::pipeline;

namespace {

Tensor mean_ce(const Tensor& out, const Tensor& y) { return nn::cross_entropy(out, y); }

// Two 1F1B steps of the MLP on `devices` (one stage each), each stage's communicator
// made from its rank thread's threads communicator by `wrap`, against the CPU.
void check_on(const std::vector<Device>& devices,
              const std::function<std::shared_ptr<parallel::Communicator>(std::shared_ptr<parallel::Communicator>)>& wrap) {
  const int p = int(devices.size()), m = 4;
  auto ref = samples::make_mlp();
  auto sharded = parallel::shard(std::dynamic_pointer_cast<nn::Sequential>(ref->clone(kCPU)), devices);
  parallel::run_ranks(p, [&](const std::shared_ptr<parallel::Communicator>& boot) {
    const int s = boot->rank();
    if (devices[size_t(s)].is_cuda()) cuda::set_device(devices[size_t(s)].index);
    pp::PipelineStage stage(wrap(boot), sharded->stage(size_t(s)), devices[size_t(s)]);
    optim::SGD opt(sharded->stage(size_t(s))->parameters(), {.lr = 0.1, .momentum = 0.9});
    for (int step = 0; step < 2; ++step) {
      const auto xy = test::images(16, 90 + uint64_t(step));
      stage.train_step(pp::make_schedule("1f1b", p, m), xy.first, xy.second, mean_ce);
      opt.step(), opt.zero_grad();
    }
  });
  optim::SGD ref_opt(ref->parameters(), {.lr = 0.1, .momentum = 0.9});
  for (int step = 0; step < 2; ++step) {
    const auto xy = test::images(16, 90 + uint64_t(step));
    for (const auto& [a, b] : pp::microbatch_rows(16, m))
      (mean_ce((*ref)(xy.first.narrow(0, a, b - a)), xy.second.narrow(0, a, b - a)) * (double(b - a) / 16.0))
          .backward();
    ref_opt.step(), ref_opt.zero_grad();
  }
  CHECK(test::max_param_diff(*ref, *sharded) < 1e-4);
}

}  // namespace

TEST_CASE("pipeline stages cpu:0 + cuda:0 over the threads backend (needs a GPU)", "[pipeline][cuda]") {
  if (!cuda::is_available()) {
    WARN("SKIP pipeline cpu:0 + cuda:0: no GPU is visible");
    return;
  }
  check_on({Device::cpu(0), Device::cuda(0)}, [](auto boot) { return boot; });
  check_on({Device::cuda(0), Device::cpu(1), Device::cuda(0)}, [](auto boot) { return boot; });
}

TEST_CASE("pipeline stages on two GPUs exchange activations through NCCL (needs two GPUs)", "[pipeline][nccl]") {
  if (!parallel::built_with_nccl() || !cuda::is_available() || cuda::device_count() < 2) {
    WARN("SKIP pipeline over NCCL: " << (!parallel::built_with_nccl() ? "weft was built without NCCL"
                                         : !cuda::is_available()      ? "no GPU is visible"
                                                                      : "one GPU; NCCL needs one per rank"));
    return;
  }
  check_on({Device::cuda(0), Device::cuda(1)}, [](std::shared_ptr<parallel::Communicator> boot) {
    return std::shared_ptr<parallel::Communicator>(parallel::NcclCommunicator::create(boot, boot->rank()));
  });
}
