// Optimizers against their formulas, computed independently in the test; schedules;
// gradient clipping; state round trips.
#include <cmath>
#include <limits>

#include "../helpers.h"

using namespace weft;

namespace {
// A 1-element parameter with a fixed gradient sequence, stepped n times.
std::vector<double> run(optim::Optimizer& opt, Tensor& p, const std::vector<double>& grads) {
  std::vector<double> out;
  for (double g : grads) {
    p.set_grad(full({1}, g, {.dtype = kFloat64}));
    opt.step();
    out.push_back(p.item<double>());
  }
  return out;
}
const std::vector<double> kGrads = {0.5, -1.0, 2.0, 0.25, -0.75};
}  // namespace

TEST_CASE("SGD matches its formula: momentum, dampening, nesterov, weight decay", "[optim]") {
  for (bool nesterov : {false, true}) {
    for (double damp : {0.0, 0.3}) {
      if (nesterov && damp > 0) continue;
      const double lr = 0.1, mom = 0.9, wd = 0.01;
      Tensor p = full({1}, 1.0, {.dtype = kFloat64, .requires_grad = true});
      optim::SGD opt({p}, {.lr = lr, .momentum = mom, .dampening = damp, .weight_decay = wd, .nesterov = nesterov});
      auto got = run(opt, p, kGrads);
      double w = 1.0, buf = 0;
      for (size_t t = 0; t < kGrads.size(); ++t) {
        double d = kGrads[t] + wd * w;
        buf = t == 0 ? d : mom * buf + (1 - damp) * d;
        d = nesterov ? d + mom * buf : buf;
        w -= lr * d;
        REQUIRE(got[t] == Approx(w).epsilon(1e-12));
      }
    }
  }
  Tensor p = full({1}, 1.0, {.requires_grad = true});
  REQUIRE_THROWS_WITH(optim::SGD({p}, {.momentum = 0.0, .nesterov = true}), Catch::Contains("Nesterov"));
}

TEST_CASE("Adam and AdamW match their formulas", "[optim]") {
  for (bool decoupled : {false, true}) {
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
    Tensor p = full({1}, 1.0, {.dtype = kFloat64, .requires_grad = true});
    optim::Adam opt({p}, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd}, decoupled);
    auto got = run(opt, p, kGrads);
    double w = 1.0, m = 0, v = 0;
    for (size_t t = 1; t <= kGrads.size(); ++t) {
      double g = kGrads[t - 1] + (decoupled ? 0 : wd * w);
      if (decoupled) w *= 1 - lr * wd;
      m = b1 * m + (1 - b1) * g;
      v = b2 * v + (1 - b2) * g * g;
      const double mh = m / (1 - std::pow(b1, t)), vh = v / (1 - std::pow(b2, t));
      w -= lr * mh / (std::sqrt(vh) + eps);
      REQUIRE(got[t - 1] == Approx(w).epsilon(1e-10));
    }
  }
}

TEST_CASE("optimizers skip parameters without gradients and reject bad params", "[optim]") {
  Tensor a = ones({2}, {.requires_grad = true}), b = ones({2}, {.requires_grad = true});
  optim::SGD opt({a, b}, {.lr = 1.0});
  a.set_grad(ones({2}));
  opt.step();
  REQUIRE(a.to_vector<float>() == std::vector<float>{0, 0});
  REQUIRE(b.to_vector<float>() == std::vector<float>{1, 1});
  REQUIRE_THROWS_WITH(optim::SGD({ones({2})}, {}), Catch::Contains("requires grad"));
  REQUIRE_THROWS_WITH(optim::SGD({a}, {.lr = -1}), Catch::Contains("learning rate"));
}

TEST_CASE("a training step with an optimizer reduces the loss", "[optim]") {
  manual_seed(1);
  nn::Linear fc(5, 3);
  Tensor x = randn({32, 5}), y = tensor(std::vector<int64_t>(32, 1));
  optim::AdamW opt(fc.parameters(), {.lr = 0.05});
  double first = 0, last = 0;
  for (int i = 0; i < 30; ++i) {
    opt.zero_grad();
    Tensor loss = nn::cross_entropy(fc(x), y);
    loss.backward();
    opt.step();
    (i == 0 ? first : last) = loss.item<double>();
  }
  REQUIRE(last < 0.2 * first);
}

TEST_CASE("optimizer state round trip continues exactly", "[optim][state]") {
  auto make = [] { return full({3}, 1.0, {.requires_grad = true}); };
  Tensor p1 = make(), p2 = make();
  optim::Adam a1({p1}, {.lr = 0.1}), a2({p2}, {.lr = 0.1});
  auto grad = [](int i) { return full({3}, std::sin(i + 1.0)); };
  for (int i = 0; i < 3; ++i) p1.set_grad(grad(i)), a1.step();
  // p2 takes p1's state, then both take two more steps.
  {
    autograd::NoGradGuard g;
    p2.copy_(p1);
  }
  a2.load_state_dict(a1.state_dict());
  REQUIRE(a2.steps_taken() == 3);
  for (int i = 3; i < 5; ++i) p1.set_grad(grad(i)), a1.step(), p2.set_grad(grad(i)), a2.step();
  REQUIRE(equal(p1, p2));
  REQUIRE_THROWS_WITH(a2.load_state_dict({{"step", full({}, 1.0, {.dtype = kInt64})}, {"7.exp_avg", zeros({3})}}),
                      Catch::Contains("parameter 7"));
}

TEST_CASE("optimizer hyper-parameters are checked, each named with its value", "[optim][errors]") {
  Tensor p = ones({2}, {.requires_grad = true});
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  // --lr inf used to pass the constructor and fail later, in the schedule, as "-nan".
  REQUIRE_THROWS_WITH(optim::AdamW({p}, {.lr = inf}), Catch::Contains("learning rate") && Catch::Contains("inf"));
  REQUIRE_THROWS_WITH(optim::SGD({p}, {.lr = nan}), Catch::Contains("learning rate") && Catch::Contains("nan"));
  // --weight-decay nan used to be reported as a bad eps.
  REQUIRE_THROWS_WITH(optim::AdamW({p}, {.weight_decay = nan}),
                      Catch::Contains("weight_decay") && Catch::Contains("nan") && !Catch::Contains("eps"));
  REQUIRE_THROWS_WITH(optim::Adam({p}, {.eps = -1}), Catch::Contains("eps must be") && Catch::Contains("-1"));
  REQUIRE_THROWS_WITH(optim::SGD({p}, {.lr = 0.1, .weight_decay = inf}), Catch::Contains("weight_decay"));
  REQUIRE_THROWS_WITH(optim::SGD({p}, {.lr = 0.1, .momentum = nan}), Catch::Contains("momentum"));
  optim::SGD ok({p}, {.lr = 0.1});
  REQUIRE_THROWS_WITH(ok.set_lr(inf), Catch::Contains("learning rate"));
}

TEST_CASE("learning-rate schedules", "[optim][schedule]") {
  Tensor p = ones({1}, {.requires_grad = true});
  optim::SGD opt({p}, {.lr = 1.0});
  optim::StepLR step(opt, 10, 0.5);
  REQUIRE(step.lr_at(9) == 1.0);
  REQUIRE(step.lr_at(10) == 0.5);
  REQUIRE(step.lr_at(25) == 0.25);
  optim::CosineWarmupLR cos(opt, 4, 104, 0.0);
  REQUIRE(opt.lr() == Approx(0.2));  // set at construction: warmup step 0 of 4
  REQUIRE(cos.lr_at(3) == Approx(0.8));
  REQUIRE(cos.lr_at(4) == Approx(1.0));
  REQUIRE(cos.lr_at(54) == Approx(0.5));
  REQUIRE(cos.lr_at(104) == Approx(0.0).margin(1e-12));
  REQUIRE(cos.lr_at(500) == Approx(0.0).margin(1e-12));
  for (int i = 0; i < 54; ++i) cos.step();
  REQUIRE(opt.lr() == Approx(0.5));
  REQUIRE_THROWS_WITH(optim::CosineWarmupLR(opt, 10, 5), Catch::Contains("warmup"));
}

TEST_CASE("clip_grad_norm rescales to the max norm and returns the old norm", "[optim]") {
  Tensor a = ones({4}, {.requires_grad = true}), b = ones({1}, {.requires_grad = true});
  a.set_grad(full({4}, 3.0));  // norm 6
  b.set_grad(full({1}, 8.0));  // joint norm 10
  REQUIRE(optim::clip_grad_norm({a, b}, 5.0) == Approx(10.0));
  REQUIRE(b.grad().item<float>() == Approx(4.0f).epsilon(1e-5));
  REQUIRE(optim::clip_grad_norm({a, b}, 100.0) == Approx(5.0).epsilon(1e-5));
  REQUIRE(b.grad().item<float>() == Approx(4.0f).epsilon(1e-5));
}
