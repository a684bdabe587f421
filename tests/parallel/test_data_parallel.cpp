// parallel/data_parallel: replicas on logical CPU devices give the gradients and the
// training trajectory of one module on the whole batch; nn/replicate copies modules.
#include "parallel_helpers.h"

#include "parallel/data_parallel.h"

using namespace weft;
using weft::test::make_tiny_mlp;
using weft::test::max_param_diff;
using weft::test::tiny_batch;

namespace {

Tensor ce(const Tensor& out, const Tensor& y) { return nn::cross_entropy(out, y); }

std::vector<Device> cpu_devices(int n) {
  std::vector<Device> d;
  for (int i = 0; i < n; ++i) d.push_back(Device::cpu(i));
  return d;
}

}  // namespace

TEST_CASE("replicate copies values onto another device and refuses a different architecture", "[parallel]") {
  auto model = make_tiny_mlp();
  auto copy = nn::replicate(*model, make_tiny_mlp, Device::cpu(1));
  for (const auto& [name, t] : copy->state_dict()) CHECK(t.device() == Device::cpu(1));
  CHECK(max_param_diff(*model, *copy) == 0.0);

  auto other = [] {
    return std::static_pointer_cast<nn::Module>(std::make_shared<nn::Linear>(6, 3));
  };
  REQUIRE_THROWS_WITH(nn::replicate(*model, other, Device::cpu(1)),
                      Catch::Contains("replicate") && Catch::Contains("missing keys"));
}

TEST_CASE("DataParallel gradients equal the single module's on the full batch", "[parallel]") {
  for (int n : {2, 3}) {
    DYNAMIC_SECTION(n << " cpu devices") {
      auto model = make_tiny_mlp();
      auto single = nn::replicate(*model, make_tiny_mlp, kCPU);
      parallel::DataParallel dp(model, make_tiny_mlp, cpu_devices(n));
      const auto batch = tiny_batch(10, 3);  // 10 samples: uneven shards for n = 3 (4,3,3)

      const double dp_loss = dp.forward_backward(batch.x, batch.y, ce);
      Tensor loss = ce((*single)(batch.x), batch.y);
      loss.backward();

      CHECK(dp_loss == Approx(loss.item<double>()).epsilon(1e-5));
      CHECK(max_param_diff(dp.module(), *single, /*grads=*/true) < 1e-6);
      for (const Tensor& p : dp.module().parameters()) CHECK(p.grad().device() == Device::cpu(0));
    }
  }
}

TEST_CASE("DataParallel trains like the single module over several SGD steps", "[parallel]") {
  auto model = make_tiny_mlp();
  auto single = model->clone(kCPU);
  parallel::DataParallel dp(model, cpu_devices(3));  // replicas by Module::clone, no factory
  optim::SGD opt_dp(dp.module().parameters(), {.lr = 0.1, .momentum = 0.9});
  optim::SGD opt_single(single->parameters(), {.lr = 0.1, .momentum = 0.9});
  for (int step = 0; step < 5; ++step) {
    const auto batch = tiny_batch(12, 10 + step);
    opt_dp.zero_grad();
    dp.forward_backward(batch.x, batch.y, ce);
    opt_dp.step();
    opt_single.zero_grad();
    ce((*single)(batch.x), batch.y).backward();
    opt_single.step();
  }
  CHECK(max_param_diff(dp.module(), *single) < 1e-5);
  // The replicas follow the primary once synced (the next step would do it itself).
  dp.sync_replicas();
  for (size_t r = 1; r < dp.num_replicas(); ++r) CHECK(max_param_diff(*dp.replica(r), dp.module()) == 0.0);
}

TEST_CASE("DataParallel with fewer samples than devices uses only the first replicas", "[parallel]") {
  auto model = make_tiny_mlp();
  auto single = nn::replicate(*model, make_tiny_mlp, kCPU);
  parallel::DataParallel dp(model, make_tiny_mlp, cpu_devices(3));
  const auto batch = tiny_batch(2, 5);
  dp.forward_backward(batch.x, batch.y, ce);
  ce((*single)(batch.x), batch.y).backward();
  CHECK(max_param_diff(dp.module(), *single, true) < 1e-6);
  CHECK(parallel::DataParallel::shard_size(10, 3, 0) == 4);
  CHECK(parallel::DataParallel::shard_size(10, 3, 2) == 3);
}

TEST_CASE("DataParallel rejects a repeated device and reports a replica's error", "[parallel]") {
  REQUIRE_THROWS_WITH(parallel::DataParallel(make_tiny_mlp(), make_tiny_mlp, {Device::cpu(0), Device::cpu(0)}),
                      Catch::Contains("cpu:0 is listed twice"));
  parallel::DataParallel dp(make_tiny_mlp(), make_tiny_mlp, cpu_devices(2));
  const auto batch = tiny_batch(4, 1);
  Tensor wrong_x = randn({4, 5});  // the model wants 6 features
  REQUIRE_THROWS_AS(dp.forward_backward(wrong_x, batch.y, ce), Error);
}

namespace {
struct NoFresh : nn::Module {
  Tensor forward(const Tensor& x) override { return x; }
  std::string repr() const override { return "NoFresh()"; }
};
}  // namespace

TEST_CASE("Module::clone copies values into separate storage and leaves the generator alone", "[parallel][nn]") {
  auto model = make_tiny_mlp();
  model->eval();
  const uint64_t offset = default_generator().offset();
  auto copy = model->clone(Device::cpu(1));
  CHECK(default_generator().offset() == offset);
  CHECK_FALSE(copy->is_training());
  CHECK(copy->repr() == model->repr());
  const auto a = model->state_dict(), b = copy->state_dict();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].first == b[i].first);
    CHECK(b[i].second.device() == Device::cpu(1));
    CHECK(equal(a[i].second, b[i].second));
    CHECK(a[i].second.raw_data() != b[i].second.raw_data());
  }
  // A module of one's own that cannot build itself says how to fix that.
  nn::Sequential with_custom(std::make_shared<nn::Linear>(2, 2), std::make_shared<NoFresh>());
  CHECK_THROWS_WITH(with_custom.clone(kCPU), Catch::Contains("NoFresh() cannot build a fresh copy") &&
                                                 Catch::Contains("override make_fresh()"));
}
