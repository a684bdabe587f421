// Autocast (autograd/autocast.h): which ops run in which dtype, the scope's nesting and
// thread-locality, gradients reaching float32 parameters, training that matches float32,
// and the optimizers' float32 master weights for 16-bit parameters.
#include <thread>

#include "../helpers.h"
#include "optim/grad_scaler.h"

using namespace weft;

namespace {

Tensor seeded(const Shape& s, uint64_t seed) {
  Generator g(seed);
  return randn(s, {}, g);
}

// A two-layer classifier on a fixed synthetic problem; returns the last loss after
// `steps` full-batch AdamW steps, each under Autocast(dt) unless dt is float32.
double train_toy(DType dt, int steps) {
  const Tensor x = seeded({256, 20}, 1), w_true = seeded({20, 4}, 2);
  const Tensor y = matmul(x, w_true).argmax(1);
  Tensor w1 = (seeded({32, 20}, 3) * 0.2).requires_grad_(), b1 = zeros({32}).requires_grad_();
  Tensor w2 = (seeded({4, 32}, 4) * 0.2).requires_grad_(), b2 = zeros({4}).requires_grad_();
  optim::AdamW opt({w1, b1, w2, b2}, {.lr = 1e-2});
  optim::GradScaler scaler({.enabled = dt == kFloat16});
  double last = 0;
  for (int s = 0; s < steps; ++s) {
    Tensor loss;
    {
      const Autocast ac = autocast::for_precision(dt);
      loss = nn::cross_entropy(linear(linear(x, w1, b1).relu(), w2, b2), y);
    }
    opt.zero_grad();
    scaler.scale(loss).backward();
    scaler.step(opt);
    scaler.update();
    last = loss.item<double>();
  }
  return last;
}

}  // namespace

TEST_CASE("autocast: lower-precision ops run in the 16-bit type, float32 ops in float32", "[autocast]") {
  const Tensor x = seeded({4, 8}, 1), w = seeded({3, 8}, 2), b = seeded({3}, 3);
  const Tensor img = seeded({2, 1, 6, 6}, 4), k = seeded({2, 1, 3, 3}, 5);
  const Tensor target = tensor(std::vector<int64_t>{0, 1, 2, 0});
  REQUIRE_FALSE(autocast::enabled());
  CHECK(linear(x, w, b).dtype() == kFloat32);
  for (DType dt : {kBFloat16, kFloat16}) {
    INFO(dtype_name(dt));
    Autocast ac(dt);
    REQUIRE(autocast::enabled());
    const Tensor y = linear(x, w, b);
    CHECK(y.dtype() == dt);
    CHECK(matmul(x, w.t()).dtype() == dt);
    CHECK(conv2d(img, k, Tensor(), {}).dtype() == dt);
    CHECK(y.relu().dtype() == dt);                            // on no list: the input's dtype
    CHECK((y + seeded({3}, 6)).dtype() == kFloat32);          // 16-bit with float32: promotes
    CHECK(softmax(y, 1).dtype() == kFloat32);                 // float32 list
    CHECK(log_softmax(y, 1).dtype() == kFloat32);
    CHECK(nn::cross_entropy(y, target).dtype() == kFloat32);
    CHECK(nn::mse_loss(y, y.detach()).dtype() == kFloat32);
    CHECK(nn::layer_norm(y, 1, 1e-5).dtype() == kFloat32);
    // the values: linear's float32 result on the rounded inputs, rounded once
    const Tensor ref = linear(x.to(dt), w.to(dt), b.to(dt)).to(kFloat32);
    CHECK(y.to(kFloat32).to_vector<float>() == ref.to_vector<float>());
    // float64 is left alone, as PyTorch leaves it
    CHECK(linear(x.to(kFloat64), w.to(kFloat64), Tensor()).dtype() == kFloat64);
    {
      Autocast off(dt, /*enabled=*/false);  // a float32 island
      CHECK(linear(x, w, b).dtype() == kFloat32);
    }
    CHECK(linear(x, w, b).dtype() == dt);  // back on after the island
  }
  CHECK_FALSE(autocast::enabled());
  CHECK(autocast::lower_precision_ops() == std::vector<std::string>{"matmul", "linear", "conv2d"});
  CHECK(std::find(autocast::float32_ops().begin(), autocast::float32_ops().end(), "softmax") !=
        autocast::float32_ops().end());
  REQUIRE_THROWS_WITH(Autocast(kFloat32), Catch::Contains("bfloat16 or float16"));
}

TEST_CASE("autocast: the scope belongs to its thread", "[autocast]") {
  Autocast ac(kBFloat16);
  bool other_enabled = true;
  std::thread t([&] { other_enabled = autocast::enabled(); });
  t.join();
  CHECK_FALSE(other_enabled);
  CHECK(autocast::enabled());
}

TEST_CASE("autocast: gradients reach the float32 parameters in float32, close to float32's", "[autocast]") {
  const Tensor x = seeded({16, 12}, 7);
  const Tensor target = tensor(std::vector<int64_t>{0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3});
  auto grads = [&](bool cast) {
    Tensor w = (seeded({4, 12}, 8) * 0.3).requires_grad_(), b = zeros({4}).requires_grad_();
    {
      Autocast ac(kBFloat16, cast);
      nn::cross_entropy(linear(x, w, b), target).backward();
    }
    return std::pair{w.grad(), b.grad()};
  };
  const auto [w16, b16] = grads(true);
  const auto [w32, b32] = grads(false);
  REQUIRE(w16.dtype() == kFloat32);
  REQUIRE(b16.dtype() == kFloat32);
  const std::vector<float> a = w16.to_vector<float>(), r = w32.to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(r[i]).margin(0.01).epsilon(0.03));
}

TEST_CASE("autocast: bf16 and fp16 (with loss scaling) train a classifier as float32 does", "[autocast]") {
  const double f32 = train_toy(kFloat32, 60), bf16 = train_toy(kBFloat16, 60), fp16 = train_toy(kFloat16, 60);
  INFO("float32 " << f32 << ", bfloat16 " << bf16 << ", float16 " << fp16);
  CHECK(f32 < 0.3);  // it learns: log(4) = 1.39 at the start
  CHECK(std::abs(bf16 - f32) < 0.05);
  CHECK(std::abs(fp16 - f32) < 0.02);
}

TEST_CASE("optimizers keep float32 master weights for 16-bit parameters", "[autocast][optim]") {
  // lr * grad = 1e-4 per step on a weight of 1: far below bfloat16's spacing there (2^-7),
  // so a bfloat16 weight updated in place would never move.
  Tensor w = ones({3}, {.dtype = kBFloat16, .requires_grad = true});
  optim::SGD opt({w}, {.lr = 1e-4});
  for (int s = 0; s < 100; ++s) {
    opt.zero_grad();
    w.sum().backward();
    REQUIRE(w.grad().dtype() == kBFloat16);
    opt.step();
  }
  REQUIRE(w.dtype() == kBFloat16);
  const float expect = half::bf16_to_float(half::float_to_bf16(0.99f));
  CHECK(w.to(kFloat32).to_vector<float>() == std::vector<float>(3, expect));
  const nn::NamedTensors st = opt.state_dict();
  const auto master = std::find_if(st.begin(), st.end(), [](const auto& kv) { return kv.first == "0.master"; });
  REQUIRE(master != st.end());
  CHECK(master->second.dtype() == kFloat32);
  CHECK(master->second.to_vector<float>()[0] == Approx(0.99f).epsilon(1e-5));

  // A resumed optimizer continues from the saved master copy, not from the rounded weight.
  Tensor w2 = w.detach().clone().requires_grad_(true);
  optim::SGD opt2({w2}, {.lr = 1e-4});
  opt2.load_state_dict(st);
  opt2.zero_grad();
  w2.sum().backward();
  opt2.step();
  const nn::NamedTensors st2 = opt2.state_dict();
  CHECK(std::find_if(st2.begin(), st2.end(), [](const auto& kv) { return kv.first == "0.master"; })
            ->second.to_vector<float>()[0] == Approx(0.9899f).epsilon(1e-5));

  // Adam's moments of a 16-bit parameter are float32; a weight changed outside the
  // optimizer restarts its master copy.
  Tensor v = full({2}, 2.0, {.dtype = kFloat16, .requires_grad = true});
  optim::Adam adam({v}, {.lr = 0.1});
  adam.zero_grad();
  v.sum().backward();
  adam.step();
  for (const auto& [k, t] : adam.state_dict())
    if (k != "step") CHECK(t.dtype() == kFloat32);
  {
    autograd::NoGradGuard ng;
    v.fill_(5.0);
  }
  adam.zero_grad();
  v.sum().backward();
  adam.step();
  CHECK(v.to(kFloat32).to_vector<float>()[0] == Approx(4.9).margin(0.01));

  // Converted back to float32 (Module::to), a parameter is its own master again: the old
  // copy neither overwrites it nor appears in the state.
  nn::Linear fc(3, 2);
  fc.to(kBFloat16);
  optim::SGD sgd(fc.parameters(), {.lr = 0.1});
  fc(ones({1, 3}, {.dtype = kBFloat16})).sum().backward();
  sgd.step();
  fc.to(kFloat32);
  {
    autograd::NoGradGuard ng;
    fc.weight.fill_(7.0);
  }
  sgd.zero_grad();
  fc(ones({1, 3})).sum().backward();
  sgd.step();
  CHECK(fc.weight.to_vector<float>() == std::vector<float>(6, 6.9f));
  for (const auto& [k, t] : sgd.state_dict()) CHECK(k.find("master") == std::string::npos);
}

TEST_CASE("GradScaler refuses float16 gradients, which it would underflow", "[autocast][optim]") {
  Tensor w = ones({2}, {.dtype = kFloat16, .requires_grad = true});
  optim::SGD opt({w}, {.lr = 0.1});
  optim::GradScaler scaler;
  scaler.scale(w.sum()).backward();
  REQUIRE_THROWS_WITH(scaler.step(opt), Catch::Contains("float16 gradients") && Catch::Contains("Autocast"));
}
