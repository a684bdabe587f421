// The pipeline executor (parallel/pipeline/pipeline.h) on the threads communicator,
// stages on logical CPU devices. The heart of it is parity: a pipelined step must leave
// exactly the parameters that one device leaves after the same microbatches, in the same
// order, with the same weights -- for every schedule, stage count and microbatch count.
#include <atomic>

#include "../../helpers.h"
#include "../parallel_helpers.h"
#include "pipeline_helpers.h"
#include "parallel/pipeline/pipeline.h"
#include "parallel/pipeline/shard.h"
#include "samples/common/models.h"

using namespace weft;
namespace pp = weft::parallel::pipeline;
// (Batches are `const auto xy = images(...); const Tensor &x = xy.first, ...`, not
// structured bindings: clang 14, which the sanitizer build uses, cannot capture those.)

namespace {

Tensor mean_ce(const Tensor& out, const Tensor& y) { return nn::cross_entropy(out, y); }

using test::cpus;
using test::images;

// One device: microbatches in order 0..m-1, each loss weighted by its share of the rows.
// Returns the batch's mean loss (the sum of the shares). Like a stage, it keeps the
// Linear layers' transposed weights for the step.
double reference_step(nn::Module& model, const Tensor& x, const Tensor& y, int m) {
  std::optional<nn::TransposedWeightScope> keep_transposed;
  if (m > 1) keep_transposed.emplace();
  double total = 0;
  for (const auto& [s, e] : pp::microbatch_rows(x.size(0), m)) {
    Tensor loss = mean_ce(model(x.narrow(0, s, e - s)), y.narrow(0, s, e - s)) * (double(e - s) / double(x.size(0)));
    total += loss.item<double>();
    loss.backward();
  }
  return total;
}

// `steps` AdamW steps of `schedule` on a sharded copy of `make()`'s model against the
// reference on one device; parameters must stay bitwise equal after every step.
// Every parameter of `chunks`, in order.
std::vector<Tensor> parameters_of(const std::vector<std::shared_ptr<nn::Module>>& chunks) {
  std::vector<Tensor> params;
  for (const auto& c : chunks)
    for (const Tensor& t : c->parameters()) params.push_back(t);
  return params;
}

// `v` chunks per stage: the interleaved schedule (`schedule` must name it).
void check_parity(const std::function<std::shared_ptr<nn::Sequential>()>& make, const std::string& schedule,
                  int p, int m, int steps, int64_t batch, pp::Recompute recompute = pp::Recompute::Never, int v = 1) {
  auto ref = make();
  auto sharded = parallel::shard_interleaved(std::dynamic_pointer_cast<nn::Sequential>(ref->clone(kCPU)), cpus(p), v);
  optim::AdamW ref_opt(ref->parameters(), {.lr = 1e-3, .weight_decay = 0.01});
  const pp::PipelineSchedule sched = pp::make_schedule(schedule, p, m, v);
  std::vector<double> losses(static_cast<size_t>(steps), 0.0);
  const uint64_t draws_from = default_generator().offset();  // dropout: the reference draws the same
  parallel::run_ranks(p, [&](const std::shared_ptr<parallel::Communicator>& comm) {
    const int s = comm->rank();
    const auto chunks = parallel::stage_chunks(*sharded, size_t(p), size_t(s));
    pp::PipelineStage stage(comm, chunks, sharded->device(size_t(s)));
    stage.set_recompute(recompute);
    optim::AdamW opt(parameters_of(chunks), {.lr = 1e-3, .weight_decay = 0.01});
    for (int step = 0; step < steps; ++step) {
      const auto xy = images(batch, 50 + uint64_t(step));
      const Tensor &x = xy.first, &y = xy.second;
      const double loss = stage.train_step(sched, x, y, mean_ce);
      if (stage.is_last()) losses[size_t(step)] = loss;
      opt.step();
      opt.zero_grad();
    }
  });
  default_generator().set_offset(draws_from);
  for (int step = 0; step < steps; ++step) {
    const auto xy = images(batch, 50 + uint64_t(step));
    const Tensor &x = xy.first, &y = xy.second;
    const double want = reference_step(*ref, x, y, m);
    CHECK(std::abs(losses[size_t(step)] - want) <= 1e-6 * std::abs(want));  // summed in B order
    ref_opt.step();
    ref_opt.zero_grad();
  }
  REQUIRE(test::params_equal(*ref, *sharded));
}

}  // namespace

TEST_CASE("microbatch rows split like torch.tensor_split", "[pipeline]") {
  using R = std::vector<std::pair<int64_t, int64_t>>;
  CHECK(pp::microbatch_rows(10, 3) == R{{0, 4}, {4, 7}, {7, 10}});
  CHECK(pp::microbatch_rows(4, 4) == R{{0, 1}, {1, 2}, {2, 3}, {3, 4}});
  REQUIRE_THROWS_WITH(pp::microbatch_rows(3, 4), Catch::Contains("3 rows into 4 microbatches"));
}

TEST_CASE("a pipelined step equals one device's microbatched step bit for bit (MLP)", "[pipeline][parity]") {
  for (const std::string schedule : {"gpipe", "1f1b", "zb1"})
    for (int p : {2, 3, 4})
      for (int m = 1; m <= 8; ++m) {
        if (schedule != "gpipe" && m < p) continue;
        INFO(schedule << " p=" << p << " m=" << m);
        check_parity(samples::make_mlp, schedule, p, m, 2, 12);
      }
  INFO("naive");
  check_parity(samples::make_mlp, "naive", 3, 1, 2, 12);
}

// Issue 18: v model chunks per stage, the activations going round the stages v times.
TEST_CASE("interleaved 1F1B equals one device's microbatched step bit for bit", "[pipeline][parity]") {
  for (int v : {2, 3})
    for (int p : {2, 3})
      for (int m : {p, p + 1, 2 * p}) {
        if (p * v > 6) continue;  // the MLP has 6 layers to cut into p v chunks
        INFO("interleaved p=" << p << " v=" << v << " m=" << m);
        check_parity(samples::make_mlp, "interleaved", p, m, 2, 12, pp::Recompute::Never, v);
      }
  // The CNN's 9 layers in 4 and 6 chunks; recomputation per (microbatch, chunk).
  check_parity(samples::make_cnn, "interleaved", 2, 4, 1, 10, pp::Recompute::Never, 2);
  check_parity(samples::make_cnn, "interleaved", 3, 3, 1, 9, pp::Recompute::Never, 2);
  check_parity(samples::make_mlp, "interleaved", 2, 4, 2, 12, pp::Recompute::Always, 2);
  check_parity(samples::make_mlp, "interleaved", 2, 5, 2, 12, pp::Recompute::ExceptLast, 3);
}

TEST_CASE("a pipelined step equals one device's microbatched step bit for bit (CNN)", "[pipeline][parity]") {
  for (const std::string schedule : {"gpipe", "1f1b", "zb1"})
    for (int p : {2, 3, 4})
      for (int m : {4, 5}) {
        INFO(schedule << " p=" << p << " m=" << m);
        check_parity(samples::make_cnn, schedule, p, m, 1, 10);
      }
}

// BatchNorm in a pipeline normalises each microbatch with that microbatch's statistics
// and updates its running statistics once per microbatch, in microbatch order: exactly
// what one device does with the same microbatches (docs/model-parallel.md).
TEST_CASE("BatchNorm inside a pipeline: parameters and running statistics as one device's microbatches",
          "[pipeline][batchnorm]") {
  auto make = [] {
    auto net = std::make_shared<nn::Sequential>();
    net->add<nn::Conv2d>(1, 4, nn::Conv2dOptions{.kernel_size = 3, .padding = 1});
    net->add<nn::BatchNorm2d>(4), net->add<nn::ReLU>(), net->add<nn::MaxPool2d>(2);
    net->add<nn::Flatten>(), net->add<nn::Linear>(4 * 14 * 14, 10);
    return net;
  };
  for (const std::string schedule : {"gpipe", "1f1b", "zb1-recomputed"}) {
    INFO(schedule);
    const bool recomputed = schedule == "zb1-recomputed";
    auto ref = make();
    auto sharded = parallel::shard(std::dynamic_pointer_cast<nn::Sequential>(ref->clone(kCPU)), cpus(2),
                                   parallel::Balance::parse("manual:2"));  // BatchNorm opens stage 1
    const int m = 4;
    parallel::run_ranks(2, [&](const std::shared_ptr<parallel::Communicator>& comm) {
      const int s = comm->rank();
      pp::PipelineStage stage(comm, sharded->stage(size_t(s)), sharded->device(size_t(s)));
      if (recomputed) stage.set_recompute(pp::Recompute::Always);  // running stats updated once all the same
      optim::SGD opt(sharded->stage(size_t(s))->parameters(), {.lr = 0.1});
      for (int step = 0; step < 2; ++step) {
        const auto xy = images(12, 30 + uint64_t(step));
        const Tensor &x = xy.first, &y = xy.second;
        stage.train_step(pp::make_schedule(recomputed ? "zb1" : schedule, 2, m), x, y, mean_ce);
        opt.step(), opt.zero_grad();
      }
    });
    optim::SGD ref_opt(ref->parameters(), {.lr = 0.1});
    for (int step = 0; step < 2; ++step) {
      const auto xy = images(12, 30 + uint64_t(step));
      const Tensor &x = xy.first, &y = xy.second;
      reference_step(*ref, x, y, m);
      ref_opt.step(), ref_opt.zero_grad();
    }
    const auto a = ref->state_dict(), b = sharded->state_dict();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      INFO(a[i].first);
      CHECK(a[i].first == b[i].first);
      CHECK(equal(a[i].second, b[i].second.to(kCPU)));  // running_mean and running_var included
    }
  }
}

TEST_CASE("the pipelined loss and gradients are the full batch's, whatever the microbatch count", "[pipeline]") {
  auto model = samples::make_mlp();
  const auto xy = images(12, 9);
  const Tensor &x = xy.first, &y = xy.second;
  Tensor full_loss = mean_ce((*model)(x), y);
  const double want = full_loss.item<double>();
  full_loss.backward();  // model's .grad: the full batch's gradient
  for (int m : {1, 2, 3, 4, 6}) {
    auto sharded = parallel::shard(std::dynamic_pointer_cast<nn::Sequential>(model->clone(kCPU)), cpus(2));
    std::atomic<double> got{0};
    parallel::run_ranks(2, [&](const std::shared_ptr<parallel::Communicator>& comm) {
      pp::PipelineStage stage(comm, sharded->stage(size_t(comm->rank())), sharded->device(size_t(comm->rank())));
      const double l = stage.train_step(pp::make_schedule("gpipe", 2, m), x, y, mean_ce);
      if (stage.is_last()) got = l;
    });
    INFO("m=" << m);
    CHECK(std::abs(got.load() - want) < 1e-5);
    CHECK(test::max_param_diff(*model, *sharded, /*grads=*/true) < 1e-5);
  }
}

TEST_CASE("pipelined forward gives the model's output on the last stage", "[pipeline]") {
  auto model = samples::make_cnn();
  auto sharded = parallel::shard(std::dynamic_pointer_cast<nn::Sequential>(model->clone(kCPU)), cpus(3));
  const Tensor x = images(7, 4).first;
  const Tensor want = (*model)(x);
  Tensor got;
  parallel::run_ranks(3, [&](const std::shared_ptr<parallel::Communicator>& comm) {
    pp::PipelineStage stage(comm, sharded->stage(size_t(comm->rank())), sharded->device(size_t(comm->rank())));
    Tensor out = stage.forward(x, 3);
    if (stage.is_last()) got = out;
    else CHECK_FALSE(out.defined());
  });
  REQUIRE(got.defined());
  CHECK(got.device() == Device::cpu(2));
  // Not bitwise: a GEMM of 3 rows may take another kernel than one of 7.
  CHECK(allclose(got.to(kCPU), want.detach(), 1e-5, 1e-6));
}

TEST_CASE("1F1B holds at most p - s microbatches on stage s, GPipe all m", "[pipeline][memory]") {
  const int p = 3, m = 6;
  for (const std::string schedule : {"gpipe", "1f1b"}) {
    auto sharded = parallel::shard(samples::make_mlp(), cpus(p));
    std::vector<int> peak(p);
    parallel::run_ranks(p, [&](const std::shared_ptr<parallel::Communicator>& comm) {
      const int s = comm->rank();
      pp::PipelineStage stage(comm, sharded->stage(size_t(s)), sharded->device(size_t(s)));
      const auto xy = images(12, 1);
      const Tensor &x = xy.first, &y = xy.second;
      stage.train_step(pp::make_schedule(schedule, p, m), x, y, mean_ce);
      peak[size_t(s)] = stage.last_stats().peak_in_flight;
      CHECK(stage.last_stats().busy_ms <= stage.last_stats().wall_ms + 1e-6);
    });
    for (int s = 0; s < p; ++s) {
      INFO(schedule << " stage " << s);
      CHECK(peak[size_t(s)] == (schedule == "gpipe" ? m : std::min(p - s, m)));
    }
  }
}

TEST_CASE("a failing stage makes every stage fail with the stage, action and microbatch named",
          "[pipeline][errors]") {
  // Stage 1 gets a Linear that expects 300 features where stage 0 sends 512.
  auto stage0 = std::make_shared<nn::Sequential>(std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(784, 512));
  auto stage1 = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(300, 10));
  stage1->to(Device::cpu(1));
  const auto xy = images(4, 2);
  const Tensor &x = xy.first, &y = xy.second;
  std::vector<std::string> errors(2);
  REQUIRE_THROWS_WITH(
      parallel::run_ranks(2,
                          [&](const std::shared_ptr<parallel::Communicator>& comm) {
                            const int s = comm->rank();
                            pp::PipelineStage stage(comm, s == 0 ? stage0 : stage1, Device::cpu(s));
                            try {
                              stage.train_step(pp::make_schedule("gpipe", 2, 2), x, y, mean_ce);
                            } catch (const std::exception& e) {
                              errors[size_t(s)] = e.what();
                              throw;
                            }
                          }),
      Catch::Contains("pipeline stage 1 (cpu:1), F0 of the gpipe schedule") && Catch::Contains("300"));
  // Stage 0, waiting for a gradient, learns of it at once (not at the timeout) and says
  // where it was.
  INFO(errors[0]);
  CHECK(errors[0].find("pipeline stage 0 (cpu:0), B0 of the gpipe schedule") != std::string::npos);
}

TEST_CASE("the stages' optimizer states merge into one optimizer's, and split back", "[pipeline][checkpoint]") {
  const int p = 3, m = 4;
  auto ref = samples::make_mlp();
  auto sharded = parallel::shard(std::dynamic_pointer_cast<nn::Sequential>(ref->clone(kCPU)), cpus(p));
  std::vector<nn::NamedTensors> states(p);
  parallel::run_ranks(p, [&](const std::shared_ptr<parallel::Communicator>& comm) {
    const int s = comm->rank();
    pp::PipelineStage stage(comm, sharded->stage(size_t(s)), sharded->device(size_t(s)));
    optim::AdamW opt(sharded->stage(size_t(s))->parameters(), {});
    for (int step = 0; step < 2; ++step) {
      const auto xy = images(8, 60 + uint64_t(step));
      stage.train_step(pp::make_schedule("1f1b", p, m), xy.first, xy.second, mean_ce);
      opt.step(), opt.zero_grad();
    }
    states[size_t(s)] = opt.state_dict();
  });
  optim::AdamW ref_opt(ref->parameters(), {});
  for (int step = 0; step < 2; ++step) {
    const auto xy = images(8, 60 + uint64_t(step));
    reference_step(*ref, xy.first, xy.second, m);
    ref_opt.step(), ref_opt.zero_grad();
  }
  // One optimizer over the whole model would have saved exactly this.
  const nn::NamedTensors merged = parallel::merge_stage_states(*sharded, states), want = ref_opt.state_dict();
  REQUIRE(merged.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO(want[i].first);
    CHECK(merged[i].first == want[i].first);
    CHECK(equal(merged[i].second, want[i].second));
  }
  // And each stage gets its own part back, under its own indices.
  for (int s = 0; s < p; ++s) {
    const nn::NamedTensors part = parallel::stage_state(*sharded, size_t(s), merged);
    REQUIRE(part.size() == states[size_t(s)].size());
    for (size_t i = 0; i < part.size(); ++i) {
      CHECK(part[i].first == states[size_t(s)][i].first);
      CHECK(equal(part[i].second, states[size_t(s)][i].second.to(kCPU)));
    }
  }
}

// Issue 18: a stage that recomputes keeps only each microbatch's input and runs its
// forward again before the backward. The step stays bit-identical -- dropout replays its
// masks, whatever the schedule -- and the stage holds less.
TEST_CASE("recomputed activations give bit-identical steps and hold less", "[pipeline][recompute]") {
  auto with_dropout = [] {  // 2 stages by layer count: the dropout is on stage 0
    auto net = std::make_shared<nn::Sequential>();
    net->add<nn::Flatten>(), net->add<nn::Linear>(784, 32), net->add<nn::Dropout>(0.3);
    net->add<nn::Linear>(32, 16), net->add<nn::ReLU>(), net->add<nn::Linear>(16, 10);
    return net;
  };
  for (pp::Recompute r : {pp::Recompute::ExceptLast, pp::Recompute::Always})
    for (const std::string schedule : {"gpipe", "1f1b", "zb1"}) {
      INFO(schedule << " recompute " << int(r));
      manual_seed(7);
      check_parity(with_dropout, schedule, 2, 4, 2, 12, r);
      check_parity(samples::make_cnn, schedule, 3, 4, 1, 8, r);
    }
  REQUIRE_THROWS_WITH(pp::parse_recompute("sometimes"), Catch::Contains("--recompute: unknown mode 'sometimes'"));

  // GPipe holds all m microbatches' activations; recomputing, only their inputs.
  auto peak = [](pp::Recompute r) {
    auto sharded = parallel::shard(samples::make_deep_mlp(), cpus(2));
    std::vector<int64_t> bytes(2);
    parallel::run_ranks(2, [&](const std::shared_ptr<parallel::Communicator>& comm) {
      const int s = comm->rank();
      pp::PipelineStage stage(comm, sharded->stage(size_t(s)), sharded->device(size_t(s)));
      stage.set_recompute(r);
      const auto xy = images(64, 3);
      stage.train_step(pp::make_schedule("gpipe", 2, 8), xy.first, xy.second, mean_ce);
      bytes[size_t(s)] = stage.last_stats().peak_step_bytes;
    });
    return bytes;
  };
  const auto kept = peak(pp::Recompute::Never), recomputed = peak(pp::Recompute::Always);
  for (size_t s = 0; s < 2; ++s) {
    INFO("stage " << s << ": " << kept[s] << " bytes kept, " << recomputed[s] << " recomputing");
    CHECK(recomputed[s] < kept[s]);
  }
}

// ---- 2-D parallelism: R replicas x P stages (issue 18) --------------------------------------

namespace {

// Rows [r n / R, (r + 1) n / R) of a batch of n: replica r's share.
Tensor replica_rows(const Tensor& t, int r, int replicas) {
  const int64_t n = t.size(0), begin = r * n / replicas, end = (r + 1) * n / replicas;
  return t.narrow(0, begin, end - begin);
}

// The grid on R * P rank threads, rank = replica * P + stage (communicator.h's split
// example): each replica a pipeline over its rows of every batch, each stage's replicas
// averaging their gradients (DDP). The reference is one device computing each replica's
// microbatched gradient in turn and averaging them in rank order, as deterministic DDP
// does: parameters must stay bitwise equal. Also returns the replicas' models.
void check_grid(const std::string& schedule, int P, int R, int m, int v, const parallel::DDPOptions& ddp) {
  const int steps = 2;
  const int64_t batch = 16;
  auto ref = samples::make_mlp();
  std::vector<std::shared_ptr<parallel::ShardedSequential>> replicas;
  for (int r = 0; r < R; ++r) {
    std::vector<Device> devices;  // replica r's stages on cpu:rP .. cpu:rP+P-1
    for (int s = 0; s < P; ++s) devices.push_back(Device::cpu(r * P + s));
    replicas.push_back(parallel::shard_interleaved(std::dynamic_pointer_cast<nn::Sequential>(ref->clone(kCPU)),
                                                   devices, v));
  }
  const pp::PipelineSchedule sched = pp::make_schedule(schedule, P, m, v);
  std::vector<std::vector<int>> trace_ranks(size_t(R * P));
  parallel::run_ranks(R * P, [&](const std::shared_ptr<parallel::Communicator>& world) {
    const int replica = world->rank() / P, s = world->rank() % P;
    auto pipe = world->split(replica, s), data = world->split(s, replica);
    const auto chunks = parallel::stage_chunks(*replicas[size_t(replica)], size_t(P), size_t(s));
    pp::PipelineStage stage(pipe, chunks, replicas[size_t(replica)]->device(size_t(s)));
    stage.set_data_parallel(data, ddp);
    trace_ranks[size_t(world->rank())] = {pipe->trace_rank(), data->trace_rank()};
    optim::AdamW opt(parameters_of(chunks), {.lr = 1e-3, .weight_decay = 0.01});
    for (int step = 0; step < steps; ++step) {
      const auto xy = images(batch, 70 + uint64_t(step));
      stage.train_step(sched, replica_rows(xy.first, replica, R), replica_rows(xy.second, replica, R), mean_ce);
      opt.step();
      opt.zero_grad();
    }
  });
  for (int rank = 0; rank < R * P; ++rank) CHECK(trace_ranks[size_t(rank)] == std::vector<int>{rank, rank});
  optim::AdamW ref_opt(ref->parameters(), {.lr = 1e-3, .weight_decay = 0.01});
  std::vector<Tensor> params = ref->parameters();
  for (int step = 0; step < steps; ++step) {
    const auto xy = images(batch, 70 + uint64_t(step));
    std::vector<Tensor> mean(params.size());
    for (int r = 0; r < R; ++r) {
      reference_step(*ref, replica_rows(xy.first, r, R), replica_rows(xy.second, r, R), m);
      for (size_t i = 0; i < params.size(); ++i) {
        if (r == 0) mean[i] = params[i].grad().clone();
        else mean[i].add_(params[i].grad());  // (((g0 + g1) + g2) + ...) / R
        params[i].set_grad(Tensor());
      }
    }
    for (size_t i = 0; i < params.size(); ++i) params[i].set_grad(mean[i].div_(double(R)));
    ref_opt.step();
    ref_opt.zero_grad();
  }
  for (int r = 0; r < R; ++r) {
    INFO("replica " << r);
    REQUIRE(test::params_equal(*ref, *replicas[size_t(r)]));
  }
}

}  // namespace

TEST_CASE("a 2 x 2 grid of pipeline stages and data-parallel replicas trains bit for bit like one device",
          "[pipeline][grid][parity]") {
  // Deterministic DDP sums the replicas in rank order, like the reference; with two
  // replicas a ring all-reduce adds the same two numbers, so the overlapped mode (buckets
  // launched during the last backward) is bitwise equal too.
  for (bool deterministic : {true, false})
    for (const auto& [schedule, v] : std::vector<std::pair<std::string, int>>{{"1f1b", 1}, {"zb1", 1}, {"interleaved", 2}}) {
      INFO(schedule << " v=" << v << (deterministic ? " deterministic" : " overlapped"));
      check_grid(schedule, 2, 2, 4, v, {.bucket_cap_mb = 0.05, .deterministic = deterministic});
    }
  INFO("3 replicas x 2 stages, gpipe");
  check_grid("gpipe", 2, 3, 2, 1, {.bucket_cap_mb = 0.05, .deterministic = true});
}

TEST_CASE("a grid's step is the full batch's gradient step", "[pipeline][grid]") {
  // One SGD step of the 2 x 2 grid against one backward over the whole batch: equal
  // within float32 rounding (the sums run in another order).
  auto model = samples::make_mlp();
  const auto xy = images(16, 11);
  const Tensor &x = xy.first, &y = xy.second;
  auto ref = std::dynamic_pointer_cast<nn::Sequential>(model->clone(kCPU));
  mean_ce((*ref)(x), y).backward();
  optim::SGD(ref->parameters(), {.lr = 0.5}).step();
  std::vector<std::shared_ptr<parallel::ShardedSequential>> replicas;
  for (int r = 0; r < 2; ++r)
    replicas.push_back(parallel::shard(std::dynamic_pointer_cast<nn::Sequential>(model->clone(kCPU)),
                                       {Device::cpu(2 * r), Device::cpu(2 * r + 1)}));
  parallel::run_ranks(4, [&](const std::shared_ptr<parallel::Communicator>& world) {
    const int replica = world->rank() / 2, s = world->rank() % 2;
    auto pipe = world->split(replica, s), data = world->split(s, replica);
    auto layers = replicas[size_t(replica)]->stage(size_t(s));
    pp::PipelineStage stage(pipe, layers, replicas[size_t(replica)]->device(size_t(s)));
    stage.set_data_parallel(data);
    optim::SGD opt(layers->parameters(), {.lr = 0.5});
    stage.train_step(pp::make_schedule("1f1b", 2, 4), replica_rows(x, replica, 2), replica_rows(y, replica, 2), mean_ce);
    opt.step();
  });
  for (int r = 0; r < 2; ++r) CHECK(test::max_param_diff(*ref, *replicas[size_t(r)]) < 1e-5);
}
