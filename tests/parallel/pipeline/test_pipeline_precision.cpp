// Mixed precision in the pipeline executor (parallel/pipeline/stage.h, set_precision):
// a bf16 step against one device's autocast step, the bytes that cross the stages, and
// float16's loss scale shared by the stages (GradScalerOptions::agree).
#include <limits>

#include "../../helpers.h"
#include "../parallel_helpers.h"
#include "autograd/autocast.h"
#include "optim/grad_scaler.h"
#include "parallel/pipeline/pipeline.h"
#include "parallel/pipeline/shard.h"
#include "pipeline_helpers.h"
#include "samples/common/models.h"

using namespace weft;
namespace pp = weft::parallel::pipeline;
using test::cpus;
using test::images;

namespace {
Tensor mean_ce(const Tensor& out, const Tensor& y) { return nn::cross_entropy(out, y); }
}  // namespace

TEST_CASE("a bf16 pipeline step is one device's autocast step on the same microbatches, sending half the bytes",
          "[pipeline][autocast]") {
  constexpr int kMicro = 3;
  auto model = samples::make_mlp();
  const auto xy = images(12, 9);
  const Tensor &x = xy.first, &y = xy.second;
  // One device: each microbatch's forward and loss under autocast, backward outside.
  auto ref = model->clone(kCPU);
  double want = 0;
  {
    std::optional<nn::TransposedWeightScope> keep_transposed;  // as a stage keeps them
    keep_transposed.emplace();
    for (const auto& [s, e] : pp::microbatch_rows(x.size(0), kMicro)) {
      Tensor loss;
      {
        const Autocast ac(kBFloat16);
        loss = mean_ce((*ref)(x.narrow(0, s, e - s)), y.narrow(0, s, e - s)) * (double(e - s) / double(x.size(0)));
      }
      want += loss.item<double>();
      loss.backward();
    }
  }
  std::vector<int64_t> sent[2];
  double got = 0;
  std::shared_ptr<parallel::ShardedSequential> bf16_model;
  for (DType precision : {kFloat32, kBFloat16}) {
    auto sharded = parallel::shard(std::dynamic_pointer_cast<nn::Sequential>(model->clone(kCPU)), cpus(2));
    std::vector<int64_t>& bytes = sent[precision == kBFloat16];
    bytes.assign(2, 0);
    parallel::run_ranks(2, [&](const std::shared_ptr<parallel::Communicator>& comm) {
      const int r = comm->rank();
      pp::PipelineStage stage(comm, sharded->stage(size_t(r)), sharded->device(size_t(r)));
      stage.set_precision(precision);
      const double l = stage.train_step(pp::make_schedule("gpipe", 2, kMicro), x, y, mean_ce);
      if (stage.is_last() && precision == kBFloat16) got = l;
      bytes[size_t(r)] = stage.last_stats().sent_bytes;
    });
    if (precision == kBFloat16) bf16_model = sharded;
  }
  CHECK(got == want);
  CHECK(test::max_param_diff(*ref, *bf16_model, /*grads=*/true) == 0);
  // Stage 0 sends the (12, 256) activation, stage 1 its gradient: 16 bits instead of 32.
  for (int r = 0; r < 2; ++r) {
    INFO("stage " << r);
    CHECK(sent[0][size_t(r)] > 0);
    CHECK(sent[1][size_t(r)] * 2 == sent[0][size_t(r)]);
  }
  CHECK_THROWS_WITH(parallel::run_ranks(1, [&](const std::shared_ptr<parallel::Communicator>& comm) {
                      pp::PipelineStage(comm, samples::make_mlp(), kCPU).set_precision(kInt64);
                    }),
                    Catch::Matchers::Contains("float32, bfloat16 or float16, got int64"));
}

TEST_CASE("a float16 pipeline shares one loss scale: an overflow on one stage skips the step on every stage",
          "[pipeline][autocast]") {
  auto model = samples::make_mlp();
  const auto xy = images(12, 9);
  const Tensor &x = xy.first, &y = xy.second;
  auto sharded = parallel::shard(std::dynamic_pointer_cast<nn::Sequential>(model->clone(kCPU)), cpus(2));
  struct Seen {
    std::vector<bool> stepped;
    std::vector<double> scales;
    bool unchanged_after_skip = false;
  };
  std::vector<Seen> seen(2);
  parallel::run_ranks(2, [&](const std::shared_ptr<parallel::Communicator>& comm) {
    const int r = comm->rank();
    pp::PipelineStage stage(comm, sharded->stage(size_t(r)), sharded->device(size_t(r)));
    stage.set_precision(kFloat16);
    optim::SGD opt(sharded->stage(size_t(r))->parameters(), {.lr = 0.01});
    optim::GradScaler scaler({.agree = [&](bool inf) {
      Tensor flag = full({}, inf ? 1.0 : 0.0);
      comm->allreduce(flag, parallel::ReduceOp::Max);
      return flag.item<float>() > 0;
    }});
    const auto scaled = [&](const Tensor& out, const Tensor& t) { return scaler.scale(mean_ce(out, t)); };
    for (int step = 0; step < 3; ++step) {
      opt.zero_grad();
      stage.train_step(pp::make_schedule("1f1b", 2, 3), x, y, scaled);
      std::vector<float> before;
      const Tensor w = sharded->stage(size_t(r))->parameters()[0];
      if (step == 1 && r == 0) w.grad().data<float>()[3] = std::numeric_limits<float>::infinity();  // stage 0 only
      if (step == 1) before = w.detach().to_vector<float>();
      seen[size_t(r)].stepped.push_back(scaler.step(opt));
      scaler.update();
      seen[size_t(r)].scales.push_back(scaler.get_scale());
      if (step == 1) seen[size_t(r)].unchanged_after_skip = w.detach().to_vector<float>() == before;
    }
  });
  for (int r = 0; r < 2; ++r) {
    INFO("stage " << r);
    CHECK(seen[size_t(r)].stepped == std::vector<bool>{true, false, true});
    CHECK(seen[size_t(r)].scales == std::vector<double>{65536.0, 32768.0, 32768.0});
    CHECK(seen[size_t(r)].unchanged_after_skip);
  }
}
