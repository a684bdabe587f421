// Data parallelism with modules taking and returning several tensors (nn/module.h,
// forward_many): a masked transformer returning (logits, aux_loss) under DataParallel
// (inputs scattered, outputs gathered, 0-d outputs averaged by rows) and under DDP over
// the threads communicator, each against one module on the whole batch.
#include "parallel_helpers.h"

#include "../nn/multi_tensor_models.h"
#include "parallel/batch_rows.h"
#include "parallel/data_parallel.h"
#include "parallel/ddp.h"

using namespace weft;
using Catch::Matchers::Contains;
using test::ce_plus_aux;
using test::masked_batch;
using test::max_param_diff;

namespace {

std::vector<Device> cpu_devices(int n) {
  std::vector<Device> d;
  for (int i = 0; i < n; ++i) d.push_back(Device::cpu(i));
  return d;
}

// Largest |a - b| over two tensors' elements.
double max_diff(const Tensor& a, const Tensor& b) {
  return (a.to(kCPU) - b.to(kCPU)).abs().max().item<double>();
}

// x (B, 3) -> (x.sum(1) (B), x.mean() ()): a per-row output and a 0-d mean.
struct RowsAndMean : nn::Module {
  nn::Tensors forward_many(const nn::Tensors& in) override { return {in.at(0).sum(1), in.at(0).mean()}; }
  std::shared_ptr<nn::Module> make_fresh() const override { return std::make_shared<RowsAndMean>(); }
};

}  // namespace

TEST_CASE("DataParallel with (x, mask) -> (logits, aux_loss): gradients as one module on the whole batch",
          "[parallel][multi]") {
  for (int n : {2, 3}) {
    INFO(n << " cpu devices");
    auto model = test::make_masked_model();
    auto single = model->clone(kCPU);
    parallel::DataParallel dp(model, cpu_devices(n));
    const auto b = masked_batch(10, 4);  // 10 rows: shards of 4, 3, 3 on three devices
    const double dp_loss = dp.forward_backward({b.x, b.mask}, b.y, ce_plus_aux);
    const Tensor loss = ce_plus_aux((*single)({b.x, b.mask}), b.y);
    loss.backward();
    CHECK(dp_loss == Approx(loss.item<double>()).epsilon(1e-5));
    CHECK(max_param_diff(dp.module(), *single, /*grads=*/true) < 1e-6);

    // Evaluation: logits concatenated, the 0-d aux loss averaged by rows.
    const nn::Tensors got = dp.forward_many({b.x, b.mask});
    const nn::Tensors want = (*single)({b.x, b.mask});
    REQUIRE(got.size() == 2);
    CHECK(got[0].shape() == want[0].shape());
    CHECK(got[0].device() == Device::cpu(0));
    CHECK(!got[0].requires_grad());
    CHECK(max_diff(got[0], want[0]) < 1e-5);
    CHECK(got[1].dim() == 0);
    CHECK(got[1].item<double>() == Approx(want[1].item<double>()).epsilon(1e-5));
  }
}

TEST_CASE("gathering: outputs with rows are concatenated, 0-d outputs averaged weighted by rows",
          "[parallel][multi]") {
  parallel::DataParallel dp(std::make_shared<RowsAndMean>(), cpu_devices(3));
  Generator gen(3);
  const Tensor x = randn({7, 3}, {}, gen);  // shards of 3, 2, 2 rows
  const nn::Tensors got = dp.forward_many({x});
  REQUIRE(got.size() == 2);
  CHECK(max_diff(got[0], x.sum(1)) < 1e-6);
  CHECK(got[1].item<double>() == Approx(x.mean().item<double>()).epsilon(1e-6));  // not the mean of 3 shard means
  // By hand: sum_k mean_k * n_k / B.
  const auto rows = parallel::RowRanges{{0, 3}, {3, 5}, {5, 7}};
  double by_hand = 0;
  for (const auto& r : rows) by_hand += x.narrow(0, r.first, r.second - r.first).mean().item<double>() *
                                        double(r.second - r.first) / 7.0;
  CHECK(got[1].item<double>() == Approx(by_hand).epsilon(1e-6));

  // A mask shared by the batch must be expanded to carry the batch's rows.
  auto model = test::make_masked_model();
  parallel::DataParallel masked(model, cpu_devices(2));
  const auto b = masked_batch(6, 1);
  const Tensor shared = b.mask.narrow(0, 0, 1);
  REQUIRE_THROWS_WITH(masked.forward_many({b.x, shared}),
                      Contains("DataParallel: input 1 has shape (1,1,4,4) but input 0 has 6 rows"));
  const nn::Tensors ok = masked.forward_many({b.x, shared.expand({6, 1, test::kSeqLen, test::kSeqLen})});
  CHECK(ok[0].shape() == Shape{6, test::kSeqClasses});
  REQUIRE_THROWS_WITH(masked.forward(b.x), Contains("MaskedBlock: takes 2 tensors (x, mask), given 1"));
}

TEST_CASE("DDP over 2 rank threads with (x, mask) -> (logits, aux_loss) trains as one process", "[ddp][multi]") {
  constexpr int kSteps = 3, n = 2;
  constexpr int64_t kBatch = 8;
  auto initial = test::make_masked_model();
  // Deterministic mode's guarantee: bit for bit one process summing the shards'
  // gradients in rank order.
  auto single = initial->clone(kCPU);
  {
    ThreadLimit one(1);
    optim::SGD opt(single->parameters(), {.lr = 0.1});
    for (int s = 0; s < kSteps; ++s) {
      const auto b = masked_batch(kBatch, 20 + uint64_t(s));
      std::vector<Tensor> sum;
      for (int q = 0; q < n; ++q) {
        single->zero_grad();
        ce_plus_aux((*single)({test::shard(b.x, q, n), test::shard(b.mask, q, n)}), test::shard(b.y, q, n)).backward();
        const auto params = single->parameters();
        for (size_t i = 0; i < params.size(); ++i) {
          if (q == 0) sum.push_back(params[i].grad().clone());
          else sum[i].add_(params[i].grad());
        }
      }
      const auto params = single->parameters();
      for (size_t i = 0; i < params.size(); ++i) {
        Tensor p = params[i];
        p.set_grad(sum[i].div_(double(n)));
      }
      opt.step();
    }
  }
  // And within float rounding one process on the whole batch.
  auto whole = initial->clone(kCPU);
  {
    optim::SGD opt(whole->parameters(), {.lr = 0.1});
    for (int s = 0; s < kSteps; ++s) {
      const auto b = masked_batch(kBatch, 20 + uint64_t(s));
      opt.zero_grad();
      ce_plus_aux((*whole)({b.x, b.mask}), b.y).backward();
      opt.step();
    }
  }

  // Rank 1 starts from other values: DDP broadcasts rank 0's.
  std::vector<std::shared_ptr<nn::Module>> models = {initial->clone(kCPU), test::make_masked_model(100)};
  std::vector<std::shared_ptr<nn::Module>> results(n);
  const auto errors = test::run_on_ranks(n, parallel::kDefaultTimeout, [&](std::shared_ptr<parallel::Communicator> comm) {
    const int r = comm->rank();
    auto model = models[size_t(r)];
    parallel::DistributedDataParallel ddp(model, comm, {.bucket_cap_mb = 0.01, .deterministic = true});
    optim::SGD opt(model->parameters(), {.lr = 0.1});
    for (int s = 0; s < kSteps; ++s) {
      const auto b = masked_batch(kBatch, 20 + uint64_t(s));
      opt.zero_grad();
      const nn::Tensors out = ddp({test::shard(b.x, r, n), test::shard(b.mask, r, n)});
      WEFT_CHECK(out.size() == 2, "ddp returned ", out.size(), " tensors");  // no Catch2 off the main thread
      ddp.backward(ce_plus_aux(out, test::shard(b.y, r, n)));
      ddp.synchronize();
      opt.step();
    }
    results[size_t(r)] = model->clone(kCPU);
  });
  for (int r = 0; r < n; ++r) {
    INFO("rank " << r << ": " << errors[size_t(r)]);
    REQUIRE(errors[size_t(r)].empty());
    CHECK(test::params_equal(*results[size_t(r)], *single));
    CHECK(max_param_diff(*results[size_t(r)], *whole) < 1e-5);
  }
}
