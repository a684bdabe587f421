// Pipelines whose stages pass several tensors per microbatch (parallel/pipeline/stage.h,
// SEVERAL TENSORS PER MICROBATCH): a masked transformer returning (logits, aux_loss),
// with (x, mask) and (x, mask, aux) crossing the stage boundaries. As in
// test_pipeline.cpp, a pipelined step must leave exactly the parameters of one device
// running the same microbatches in the same order -- for every schedule, interleaved
// chunks, recomputation and data-parallel stages; and Balance::Time on such layers.
#include "../../nn/multi_tensor_models.h"
#include "../parallel_helpers.h"
#include "parallel/pipeline/messages.h"
#include "parallel/pipeline/pipeline.h"
#include "parallel/pipeline/shard.h"
#include "pipeline_helpers.h"

using namespace weft;
namespace pp = weft::parallel::pipeline;
using test::ce_plus_aux;
using test::cpus;
using test::masked_batch;

namespace {

// One device: microbatches 0..m-1 of (x, mask), each loss weighted by its share of the
// rows, Linear's transposed weights kept for the step as a stage keeps them.
double reference_step(nn::Module& model, const test::MaskedBatch& b, int m) {
  std::optional<nn::TransposedWeightScope> keep_transposed;
  if (m > 1) keep_transposed.emplace();
  double total = 0;
  const int64_t n = b.x.size(0);
  for (const auto& [s, e] : pp::microbatch_rows(n, m)) {
    const nn::Tensors out = model({b.x.narrow(0, s, e - s), b.mask.narrow(0, s, e - s)});
    Tensor loss = ce_plus_aux(out, b.y.narrow(0, s, e - s)) * (double(e - s) / double(n));
    total += loss.item<double>();
    loss.backward();
  }
  return total;
}

std::vector<Tensor> parameters_of(const std::vector<std::shared_ptr<nn::Module>>& chunks) {
  std::vector<Tensor> params;
  for (const auto& c : chunks)
    for (const Tensor& t : c->parameters()) params.push_back(t);
  return params;
}

struct Case {
  std::string schedule;
  int p = 2, m = 4, v = 1;
  pp::Recompute recompute = pp::Recompute::Never;
  bool float_mask = false;
};

// Two AdamW steps of the case on the sharded masked model against the reference.
void check_parity(const Case& c) {
  INFO(c.schedule << " p=" << c.p << " m=" << c.m << " v=" << c.v << " recompute=" << int(c.recompute)
                  << (c.float_mask ? " float mask" : " bool mask"));
  const int steps = 2;
  const int64_t batch = 10;  // uneven microbatches for m = 4
  auto ref = test::make_masked_model();
  auto sharded = parallel::shard_interleaved(std::dynamic_pointer_cast<nn::Sequential>(ref->clone(kCPU)), cpus(c.p), c.v);
  const pp::PipelineSchedule sched = pp::make_schedule(c.schedule, c.p, c.m, c.v);
  std::vector<double> losses(size_t(steps), 0.0);
  parallel::run_ranks(c.p, [&](const std::shared_ptr<parallel::Communicator>& comm) {
    const int s = comm->rank();
    const auto chunks = parallel::stage_chunks(*sharded, size_t(c.p), size_t(s));
    pp::PipelineStage stage(comm, chunks, sharded->device(size_t(s)));
    stage.set_recompute(c.recompute);
    optim::AdamW opt(parameters_of(chunks), {.lr = 1e-2, .weight_decay = 0.01});
    for (int step = 0; step < steps; ++step) {
      const auto b = masked_batch(batch, 30 + uint64_t(step), c.float_mask);
      // Stage 0 reads the inputs, the last stage the targets; the others pass nothing.
      const double loss = stage.train_step(sched, stage.is_first() ? nn::Tensors{b.x, b.mask} : nn::Tensors{},
                                           stage.is_last() ? b.y : Tensor(), ce_plus_aux);
      if (stage.is_last()) losses[size_t(step)] = loss;
      opt.step();
      opt.zero_grad();
    }
  });
  optim::AdamW ref_opt(ref->parameters(), {.lr = 1e-2, .weight_decay = 0.01});
  for (int step = 0; step < steps; ++step) {
    const double want = reference_step(*ref, masked_batch(batch, 30 + uint64_t(step), c.float_mask), c.m);
    CHECK(std::abs(losses[size_t(step)] - want) <= 1e-6 * std::abs(want));
    ref_opt.step();
    ref_opt.zero_grad();
  }
  REQUIRE(test::params_equal(*ref, *sharded));
}

}  // namespace

TEST_CASE("the activation messages carry lists: count, dtypes, shapes, rows and which want a gradient",
          "[pipeline][multi]") {
  const Tensor a = tensor({1.f, 2.f, 3.f, 4.f, 5.f, 6.f}, {2, 3});
  const Tensor mask = masked_batch(2, 1).mask;
  const Tensor aux = tensor({0.5f}).sum();  // 0-d
  pp::Activations got;
  nn::Tensors grads;
  parallel::run_ranks(2, [&](const std::shared_ptr<parallel::Communicator>& comm) {
    if (comm->rank() == 0) {
      pp::PendingSends pending;
      pp::send_activations(*comm, {a, mask, aux}, {true, false, true}, 2, 1, 77, pending);
      // The gradients of the two that want one come back, in order, without headers.
      grads = pp::receive_gradients(*comm, {{a.shape(), a.dtype()}, {aux.shape(), aux.dtype()}}, 1, 78, kCPU);
      for (auto& send : pending) send.first->wait();
    } else {
      got = pp::receive_activations(*comm, 0, 77, kCPU);
      pp::PendingSends pending;
      pp::send_gradients(*comm, {got.tensors[0] * 2.0, got.tensors[2] * 2.0}, 0, 78, pending);
      for (auto& send : pending) send.first->wait();
    }
  });
  REQUIRE(got.tensors.size() == 3);
  CHECK(equal(got.tensors[0], a));
  CHECK(equal(got.tensors[1], mask));
  CHECK(got.tensors[1].dtype() == kBool);
  CHECK(equal(got.tensors[2], aux));
  CHECK(got.tensors[2].dim() == 0);
  CHECK(got.wants_grad == std::vector<bool>{true, false, true});
  CHECK(got.rows == 2);
  REQUIRE(grads.size() == 2);
  CHECK(equal(grads[0], a * 2.0));
  CHECK(equal(grads[1], aux * 2.0));
}

TEST_CASE("several tensors per microbatch: each schedule equals one device bit for bit", "[pipeline][multi][parity]") {
  for (const std::string schedule : {"gpipe", "1f1b", "zb1"})
    for (bool float_mask : {false, true}) check_parity({.schedule = schedule, .float_mask = float_mask});
  check_parity({.schedule = "1f1b", .p = 3, .m = 3});
  check_parity({.schedule = "gpipe", .m = 1});
}

TEST_CASE("several tensors per microbatch: interleaved chunks equal one device bit for bit",
          "[pipeline][multi][parity]") {
  // 6 layers in 4 chunks: (x, mask) and (x, mask, aux) cross, stage 1 -> stage 0 included.
  check_parity({.schedule = "interleaved", .m = 4, .v = 2});
  check_parity({.schedule = "interleaved", .m = 4, .v = 2, .float_mask = true});
}

TEST_CASE("several tensors per microbatch: recomputation stays bit for bit", "[pipeline][multi][recompute]") {
  // Recomputing, F runs without the tape, so a float mask asks for a gradient too (one
  // that changes nothing): the parameters must not notice.
  for (const std::string schedule : {"gpipe", "1f1b", "zb1"})
    for (bool float_mask : {false, true})
      check_parity({.schedule = schedule, .recompute = pp::Recompute::Always, .float_mask = float_mask});
  check_parity({.schedule = "1f1b", .recompute = pp::Recompute::ExceptLast, .float_mask = true});
  check_parity({.schedule = "interleaved", .m = 4, .v = 2, .recompute = pp::Recompute::Always});
}

TEST_CASE("several tensors per microbatch on a 2 x 2 grid of stages and data-parallel replicas",
          "[pipeline][multi][grid]") {
  constexpr int P = 2, R = 2, m = 2;
  const int64_t batch = 8;
  auto ref = test::make_masked_model();
  std::vector<std::shared_ptr<parallel::ShardedSequential>> replicas;
  for (int r = 0; r < R; ++r)
    replicas.push_back(parallel::shard(std::dynamic_pointer_cast<nn::Sequential>(ref->clone(kCPU)),
                                       {Device::cpu(r * P), Device::cpu(r * P + 1)}));
  const auto b = masked_batch(batch, 40);
  parallel::run_ranks(R * P, [&](const std::shared_ptr<parallel::Communicator>& world) {
    const int replica = world->rank() / P, s = world->rank() % P;
    auto pipe = world->split(replica, s), data = world->split(s, replica);
    auto layers = replicas[size_t(replica)]->stage(size_t(s));
    pp::PipelineStage stage(pipe, layers, replicas[size_t(replica)]->device(size_t(s)));
    stage.set_data_parallel(data, {.bucket_cap_mb = 0.01, .deterministic = true});
    optim::SGD opt(layers->parameters(), {.lr = 0.1});
    stage.train_step(pp::make_schedule("1f1b", P, m), {test::shard(b.x, replica, R), test::shard(b.mask, replica, R)},
                     test::shard(b.y, replica, R), ce_plus_aux);
    opt.step();
  });
  // The reference: each replica's microbatched gradient, averaged in rank order.
  std::vector<Tensor> params = ref->parameters(), mean(params.size());
  for (int r = 0; r < R; ++r) {
    reference_step(*ref, {test::shard(b.x, r, R), test::shard(b.mask, r, R), test::shard(b.y, r, R)}, m);
    for (size_t i = 0; i < params.size(); ++i) {
      if (r == 0) mean[i] = params[i].grad().clone();
      else mean[i].add_(params[i].grad());
      params[i].set_grad(Tensor());
    }
  }
  for (size_t i = 0; i < params.size(); ++i) params[i].set_grad(mean[i].div_(double(R)));
  optim::SGD(ref->parameters(), {.lr = 0.1}).step();
  for (int r = 0; r < R; ++r) {
    INFO("replica " << r);
    CHECK(test::params_equal(*ref, *replicas[size_t(r)]));
  }
}

TEST_CASE("pipelined forward of several tensors: logits concatenated, the aux loss averaged by rows",
          "[pipeline][multi]") {
  auto model = test::make_masked_model();
  auto sharded = parallel::shard_interleaved(std::dynamic_pointer_cast<nn::Sequential>(model->clone(kCPU)), cpus(2), 2);
  const auto b = masked_batch(7, 8);
  const nn::Tensors want = (*model)({b.x, b.mask});
  nn::Tensors got;
  std::vector<size_t> counts(2);
  parallel::run_ranks(2, [&](const std::shared_ptr<parallel::Communicator>& comm) {
    const int s = comm->rank();
    pp::PipelineStage stage(comm, parallel::stage_chunks(*sharded, 2, size_t(s)), sharded->device(size_t(s)));
    nn::Tensors out = stage.forward(stage.is_first() ? nn::Tensors{b.x, b.mask} : nn::Tensors{}, 3);
    counts[size_t(s)] = out.size();
    if (stage.is_last()) got = out;
  });
  CHECK(counts == std::vector<size_t>{0, 2});
  REQUIRE(got.size() == 2);
  CHECK(got[0].device() == Device::cpu(1));
  // Not bitwise: microbatches of 3, 2 and 2 rows against one GEMM of 7, and a weighted
  // mean of three aux losses against one.
  CHECK(allclose(got[0].to(kCPU), want[0].detach(), 1e-5, 1e-6));
  CHECK(got[1].dim() == 0);
  CHECK(got[1].item<double>() == Approx(want[1].item<double>()).epsilon(1e-5));
}

TEST_CASE("balance by time on layers that take several tensors: timed on (x, mask), cut, sharded",
          "[pipeline][multi][shard]") {
  for (bool float_mask : {false, true}) {
    DYNAMIC_SECTION((float_mask ? "float" : "bool") << " mask") {
      auto net = test::make_masked_model();
      const test::MaskedBatch b = masked_batch(8, 3, float_mask);
      parallel::Balance by_time = parallel::Balance::parse("time");
      by_time.sample = {b.x, b.mask};
      const std::vector<double> costs = parallel::layer_time_costs(*net, by_time.sample, 5);
      REQUIRE(costs.size() == net->size());
      for (double c : costs) CHECK((c > 0 && std::isfinite(c)));
      // A transformer block (layer norms, attention, an MLP) against a mean of squares.
      CHECK(costs[1] > costs[2]);
      for (const Tensor& p : net->parameters()) CHECK((!p.grad().defined() || equal(p.grad(), zeros_like(p))));

      const nn::Tensors before = (*net)({b.x, b.mask});
      const std::vector<size_t> cut = parallel::stage_boundaries(*net, 2, by_time);
      REQUIRE(cut.size() == 2);
      CHECK((cut[0] == 0 && cut[1] >= 1 && cut[1] < net->size()));
      auto sharded = parallel::shard(net, cpus(2), by_time);
      const nn::Tensors after = (*sharded)({b.x, b.mask});
      REQUIRE(after.size() == 2);
      CHECK(equal(after[0].to(kCPU), before[0]));
      CHECK(equal(after[1].to(kCPU), before[1]));
    }
  }
  auto net = test::make_masked_model();
  CHECK_THROWS_WITH(parallel::layer_time_costs(*net, {}), Catch::Contains("needs a sample input batch"));
  CHECK_THROWS_WITH(parallel::layer_time_costs(*net, {masked_batch(2, 1).x, Tensor()}),
                    Catch::Contains("sample tensor 1 of 2 is undefined"));
}
