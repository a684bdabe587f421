// Model sharding (parallel/pipeline/shard.h): a Sequential split across logical CPU
// devices computes bit for bit what the unsharded model computes, keeps every parameter,
// gradient and optimizer state on its stage's device, and saves checkpoints under the
// unsharded keys. Also the per-device byte counter (tensor/memory.h) it reports from.
#include "../../helpers.h"
#include "../parallel_helpers.h"
#include "pipeline_helpers.h"
#include "parallel/pipeline/shard.h"
#include "samples/common/models.h"

using namespace weft;
using parallel::Balance;

namespace {

using test::cpus;
using test::images;

// Trains `a` (one device) and `b` (sharded) for `steps` AdamW steps on the same batches
// and checks after each that outputs, gradients and parameters are bitwise equal.
void check_parity(const std::shared_ptr<nn::Sequential>& a, const std::shared_ptr<parallel::ShardedSequential>& b,
                  int steps) {
  optim::AdamW oa(a->parameters(), {.lr = 1e-3, .weight_decay = 0.01});
  optim::AdamW ob(b->parameters(), {.lr = 1e-3, .weight_decay = 0.01});
  for (int step = 0; step < steps; ++step) {
    const auto xy = images(8, 100 + uint64_t(step));
    const Tensor &x = xy.first, &y = xy.second;
    Tensor la = nn::cross_entropy((*a)(x), y), lb = nn::cross_entropy((*b)(x), y.to(b->device(b->num_stages() - 1)));
    REQUIRE(equal(la, lb.to(kCPU)));
    la.backward();
    lb.backward();
    REQUIRE(test::max_param_diff(*a, *b, /*grads=*/true) == 0);
    oa.step(), ob.step();
    oa.zero_grad(), ob.zero_grad();
    REQUIRE(test::params_equal(*a, *b));
  }
}

}  // namespace

TEST_CASE("a sharded MLP and CNN train bit for bit like the unsharded model", "[pipeline][shard]") {
  for (const char* name : {"mlp", "cnn"}) {
    for (int stages : {2, 3}) {
      INFO(name << " on " << stages << " stages");
      auto a = std::string(name) == "mlp" ? samples::make_mlp() : samples::make_cnn();
      auto b = std::dynamic_pointer_cast<nn::Sequential>(a->clone(kCPU));
      auto sharded = parallel::shard(b, cpus(stages));
      REQUIRE(sharded->num_stages() == size_t(stages));
      check_parity(a, sharded, 3);
    }
  }
}

TEST_CASE("each parameter, gradient and optimizer state lives on its stage's device", "[pipeline][shard]") {
  auto sharded = parallel::shard(samples::make_mlp(), cpus(3), Balance::parse("manual:2,4"));
  REQUIRE(sharded->first_layers() == std::vector<size_t>{0, 2, 4});
  optim::Adam opt(sharded->parameters(), {});
  const auto xy = images(4, 1);
  const Tensor &x = xy.first, &y = xy.second;
  nn::cross_entropy((*sharded)(x), y.to(Device::cpu(2))).backward();
  opt.step();
  for (size_t s = 0; s < sharded->num_stages(); ++s) {
    for (const Tensor& p : sharded->stage(s)->parameters()) {
      CHECK(p.device() == Device::cpu(int(s)));
      CHECK(p.grad().device() == Device::cpu(int(s)));
      for (const Tensor& t : opt.state_of(p)) CHECK(t.device() == Device::cpu(int(s)));
    }
  }
  // The output is on the last stage's device; the input may be anywhere.
  CHECK((*sharded)(x.to(Device::cpu(1))).device() == Device::cpu(2));
  const std::string report = sharded->memory_report(&opt);
  INFO(report);
  CHECK(report.find("cpu:2") != std::string::npos);
  CHECK(report.find("activations") != std::string::npos);
}

TEST_CASE("a sharded model's checkpoint has the unsharded keys and loads at any stage count",
          "[pipeline][shard][checkpoint]") {
  auto plain = samples::make_cnn();
  auto two = parallel::shard(std::dynamic_pointer_cast<nn::Sequential>(plain->clone(kCPU)), cpus(2));
  std::vector<std::string> keys_plain, keys_two;
  for (const auto& [k, _] : plain->state_dict()) keys_plain.push_back(k);
  for (const auto& [k, _] : two->state_dict()) keys_two.push_back(k);
  REQUIRE(keys_two == keys_plain);

  // Train the 2-stage model a little, then move its weights into 1 and 3 stages.
  optim::SGD opt(two->parameters(), {.lr = 0.1});
  const auto xy = images(4, 2);
  const Tensor &x = xy.first, &y = xy.second;
  nn::cross_entropy((*two)(x), y.to(Device::cpu(1))).backward();
  opt.step();
  const nn::NamedTensors saved = two->state_dict();
  auto one = samples::make_cnn();
  one->load_state_dict(saved);
  auto three = parallel::shard(samples::make_cnn(), cpus(3), Balance::parse("params"));
  three->load_state_dict(saved);
  const Tensor want = (*two)(x).to(kCPU);
  CHECK(equal((*one)(x), want));
  CHECK(equal((*three)(x).to(kCPU), want));
}

TEST_CASE("stage boundaries by count, parameters, time and by hand", "[pipeline][shard]") {
  auto mlp = samples::make_mlp();  // Flatten, Linear 784x512, ReLU, Linear 512x256, ReLU, Linear 256x10
  CHECK(parallel::stage_boundaries(*mlp, 2, Balance::parse("layers")) == std::vector<size_t>{0, 3});
  // 401,920 parameters in layer 1, 134,154 in all the rest: no split beats putting the
  // first Linear in stage 0 and everything after it in stage 1.
  const auto by_params = parallel::stage_boundaries(*mlp, 2, Balance::parse("params"));
  CHECK((by_params.size() == 2 && by_params[1] >= 2));
  Balance by_time = Balance::parse("time");
  by_time.sample = {images(16, 3).first};
  const auto t = parallel::stage_boundaries(*mlp, 3, by_time);
  REQUIRE(t.size() == 3);
  CHECK((t[0] == 0 && t[1] > 0 && t[2] > t[1] && t[2] < mlp->size()));
  const auto costs = parallel::layer_time_costs(*mlp, by_time.sample, 1);
  CHECK(costs.size() == mlp->size());
  for (double c : costs) CHECK(c >= 0);

  REQUIRE_THROWS_WITH(Balance::parse("fast"), Catch::Contains("'fast'") && Catch::Contains("manual:i,j"));
  REQUIRE_THROWS_WITH(parallel::stage_boundaries(*mlp, 3, Balance::parse("manual:2")),
                      Catch::Contains("gives 1 boundaries") && Catch::Contains("3 stages need 2"));
  REQUIRE_THROWS_WITH(parallel::stage_boundaries(*mlp, 2, Balance::parse("manual:6")),
                      Catch::Contains("starts at layer 6") && Catch::Contains("out of range 1..5"));
  REQUIRE_THROWS_WITH(parallel::shard(mlp, cpus(7)), Catch::Contains("6 layers into 7 stages"));
}

TEST_CASE("bytes in live tensors are counted per device, logical CPU devices included", "[tensor][memory]") {
  const Device d = Device::cpu(7);
  const DeviceMemory before = device_memory(d), other = device_memory(Device::cpu(6));
  {
    Tensor a = zeros({256, 4}, {.device = d});  // 4 KiB
    DeviceMemory m = device_memory(d);
    CHECK(m.allocated - before.allocated == 4096);
    CHECK(m.allocations - before.allocations == 1);
    reset_device_peak(d);
    { Tensor b = zeros({512}, {.dtype = kFloat64, .device = d}); }  // 4 KiB, freed at once
    m = device_memory(d);
    CHECK(m.allocated - before.allocated == 4096);
    CHECK(m.peak - before.allocated == 8192);
    CHECK(device_memory(Device::cpu(6)).allocated == other.allocated);  // another logical device: untouched
  }
  CHECK(device_memory(d).allocated == before.allocated);
  CHECK(format_bytes(512) == "512 B");
  CHECK(format_bytes(4096) == "4.00 KiB");
  CHECK(format_bytes(3 * 1024 * 1024 + 300 * 1024) == "3.29 MiB");
  CHECK(format_bytes(int64_t(20) << 30) == "20.0 GiB");
}
