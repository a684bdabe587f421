// optim::GradScaler: loss scaling that changes no float32 result, a step skipped on an
// injected inf or NaN (parameters and optimizer state untouched) with the scale backing
// off, growth after growth_interval clean steps, backing off from a scale that
// overflows until steps go through, misuse errors, state_dict round trips.
#include <cmath>
#include <limits>

#include "../helpers.h"
#include "optim/grad_scaler.h"

using namespace weft;
using Catch::Matchers::Contains;

namespace {

// A tiny regression model: y = x w + b, loss = mean (y - t)^2.
struct Problem {
  Tensor w, b, x, t;
  explicit Problem(uint64_t seed = 1, double x_scale = 1) {
    Generator g(seed);
    w = randn({4, 2}, {}, g).requires_grad_();
    b = zeros({2}).requires_grad_();
    x = randn({8, 4}, {}, g) * x_scale;
    t = randn({8, 2}, {}, g);
  }
  Tensor loss() const { Tensor e = matmul(x, w) + b - t;
    return mean(e * e); }
  std::vector<Tensor> params() const { return {w, b}; }
};

std::vector<float> values(const Tensor& t) { return t.detach().to_vector<float>(); }

}  // namespace

TEST_CASE("GradScaler: scaled, unscaled and stepped equals the plain step bit for bit", "[optim][grad_scaler]") {
  Problem plain, scaled;
  optim::Adam a(plain.params(), {.lr = 0.01});
  optim::Adam b(scaled.params(), {.lr = 0.01});
  optim::GradScaler scaler;
  for (int s = 0; s < 5; ++s) {
    a.zero_grad();
    plain.loss().backward();
    a.step();
    b.zero_grad();
    Tensor scaled_loss = scaler.scale(scaled.loss());
    CHECK(scaled_loss.item<float>() == scaled.loss().item<float>() * 65536.0f);
    scaled_loss.backward();
    CHECK(scaler.step(b));
    scaler.update();
  }
  CHECK(values(plain.w) == values(scaled.w));
  CHECK(values(plain.b) == values(scaled.b));
  CHECK(scaler.get_scale() == 65536.0);
  CHECK(scaler.growth_tracker() == 5);
  CHECK(scaler.skipped_steps() == 0);
}

TEST_CASE("GradScaler: an inf or NaN gradient skips the step and halves the scale", "[optim][grad_scaler]") {
  for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    INFO("injected " << bad);
    Problem p;
    optim::Adam opt(p.params(), {.lr = 0.01});
    optim::GradScaler scaler({.growth_interval = 3});
    // Two clean steps, then an overflow injected into one gradient entry.
    for (int s = 0; s < 2; ++s) {
      opt.zero_grad();
      scaler.scale(p.loss()).backward();
      scaler.step(opt);
      scaler.update();
    }
    const auto w_before = values(p.w), b_before = values(p.b);
    const auto m_before = values(opt.state_of(p.w)[0]);
    opt.zero_grad();
    scaler.scale(p.loss()).backward();
    p.w.grad().data<float>()[5] = bad;
    CHECK_FALSE(scaler.step(opt));
    CHECK(scaler.found_inf());
    scaler.update();
    CHECK(values(p.w) == w_before);  // nothing moved, no state changed
    CHECK(values(p.b) == b_before);
    CHECK(values(opt.state_of(p.w)[0]) == m_before);
    CHECK(opt.steps_taken() == 2);
    CHECK(scaler.get_scale() == 32768.0);
    CHECK(scaler.growth_tracker() == 0);
    CHECK(scaler.skipped_steps() == 1);
    // The next clean step goes through.
    opt.zero_grad();
    scaler.scale(p.loss()).backward();
    CHECK(scaler.step(opt));
    scaler.update();
    CHECK(opt.steps_taken() == 3);
  }
}

TEST_CASE("GradScaler: growth after growth_interval clean steps", "[optim][grad_scaler]") {
  Problem p;
  optim::SGD opt(p.params(), {.lr = 0.01});
  optim::GradScaler scaler({.init_scale = 8, .growth_interval = 3});
  std::vector<double> scales;
  for (int s = 0; s < 7; ++s) {
    opt.zero_grad();
    scaler.scale(p.loss()).backward();
    scaler.step(opt);
    scaler.update();
    scales.push_back(scaler.get_scale());
  }
  CHECK(scales == std::vector<double>{8, 8, 16, 16, 16, 32, 32});
}

TEST_CASE("GradScaler: a scale that overflows the gradients backs off until steps go through", "[optim][grad_scaler]") {
  // x is scaled by 1000, so gradients are about 1e3 to 1e4 and, times 2^126, overflow
  // float32 (as does the loss itself at first); each skipped step halves the scale until
  // the scaled gradients fit (around 2^114).
  Problem p(1, 1000);
  optim::SGD opt(p.params(), {.lr = 1e-8});
  optim::GradScaler scaler({.init_scale = std::ldexp(1.0, 126)});
  const float start_loss = p.loss().item<float>();
  int stepped = 0;
  for (int s = 0; s < 30; ++s) {
    opt.zero_grad();
    scaler.scale(p.loss()).backward();
    stepped += scaler.step(opt);
    scaler.update();
  }
  INFO("skipped " << scaler.skipped_steps() << ", scale 2^" << std::log2(scaler.get_scale()));
  CHECK(scaler.skipped_steps() >= 4);
  CHECK(scaler.skipped_steps() < 30);
  CHECK(stepped == 30 - scaler.skipped_steps());
  CHECK(scaler.get_scale() == std::ldexp(1.0, 126 - static_cast<int>(scaler.skipped_steps())));
  CHECK(p.loss().item<float>() < start_loss);  // the steps that went through were sound
}

TEST_CASE("GradScaler: unscale_ before clipping, misuse errors, disabled", "[optim][grad_scaler]") {
  Problem p;
  optim::SGD opt(p.params(), {.lr = 0.1});
  optim::GradScaler scaler({.init_scale = 1024});
  opt.zero_grad();
  p.loss().backward();
  const auto true_grad = values(p.w.grad());
  opt.zero_grad();
  scaler.scale(p.loss()).backward();
  scaler.unscale_(opt);
  CHECK(values(p.w.grad()) == true_grad);  // 1024 is a power of two: exact
  CHECK_THROWS_WITH(scaler.unscale_(opt), Contains("already called"));
  CHECK_THROWS_WITH(scaler.update(), Contains("no step()"));
  CHECK(scaler.step(opt));
  CHECK_THROWS_WITH(scaler.step(opt), Contains("already called"));
  scaler.update();

  optim::GradScaler off({.enabled = false});
  Tensor l = p.loss();
  CHECK(off.scale(l).item<float>() == l.item<float>());
  CHECK(off.step(opt));
  off.update();
  CHECK_THROWS_WITH(optim::GradScaler({.backoff_factor = 1.5}), Contains("backoff_factor"));
  CHECK_THROWS_WITH(optim::GradScaler({.init_scale = 0}), Contains("init_scale"));
}

TEST_CASE("GradScaler: state_dict round trip and bad states", "[optim][grad_scaler]") {
  optim::GradScaler a({.init_scale = 512});
  Problem p;
  optim::SGD opt(p.params(), {.lr = 0.01});
  for (int s = 0; s < 3; ++s) {
    opt.zero_grad();
    a.scale(p.loss()).backward();
    a.step(opt);
    a.update();
  }
  optim::GradScaler b;
  b.load_state_dict(a.state_dict());
  CHECK(b.get_scale() == 512);
  CHECK(b.growth_tracker() == 3);
  CHECK_THROWS_WITH(b.load_state_dict({{"scale", full({}, 2.0, {.dtype = kFloat64})}}), Contains("growth_tracker"));
  CHECK_THROWS_WITH(b.load_state_dict({{"scale", full({}, -1.0, {.dtype = kFloat64})},
                                       {"growth_tracker", zeros({}, {.dtype = kInt64})}}),
                    Contains("positive"));
  CHECK_THROWS_WITH(b.load_state_dict({{"bogus", zeros({})}}), Contains("bogus"));
}

TEST_CASE("GradScaler: the scale never grows past float32's range; a loaded tracker past the interval grows",
          "[optim][grad_scaler]") {
  Problem p;
  optim::SGD opt(p.params(), {.lr = 1e-9});
  optim::GradScaler top({.init_scale = std::ldexp(1.0, 127), .growth_interval = 1});
  optim::GradScaler loaded({.init_scale = 4, .growth_interval = 10});
  loaded.load_state_dict({{"scale", full({}, 4.0, {.dtype = kFloat64})},
                          {"growth_tracker", full({}, 15.0, {.dtype = kInt64})}});
  for (optim::GradScaler* s : {&top, &loaded}) {
    // A clean step (the gradients themselves, not the scaled loss, decide: step on a
    // gradient set by hand so that 2^127 * loss does not overflow first).
    opt.zero_grad();
    p.loss().backward();
    s->step(opt);
    s->update();
  }
  CHECK(top.get_scale() == std::ldexp(1.0, 127));  // 2^128 is inf in float32
  CHECK(loaded.get_scale() == 8);
  CHECK(loaded.growth_tracker() == 0);
}

TEST_CASE("GradScaler: agree makes scalers that decide together skip a step no one of them overflowed",
          "[optim][grad_scaler]") {
  Problem p;
  optim::SGD opt(p.params(), {.lr = 0.1});
  std::vector<bool> asked;
  bool others_found_inf = true;  // what the other scalers (say, pipeline stages) report
  optim::GradScaler scaler({.agree = [&](bool mine) {
    asked.push_back(mine);
    return mine || others_found_inf;
  }});
  const auto w_before = values(p.w);
  scaler.scale(p.loss()).backward();
  CHECK_FALSE(scaler.step(opt));  // clean here, overflowed elsewhere: skipped here too
  scaler.update();
  CHECK(asked == std::vector<bool>{false});
  CHECK(values(p.w) == w_before);
  CHECK(scaler.get_scale() == 32768.0);  // and backed off like the others
  others_found_inf = false;
  opt.zero_grad();
  scaler.scale(p.loss()).backward();
  CHECK(scaler.step(opt));
  scaler.update();
  CHECK(values(p.w) != w_before);
}

TEST_CASE("GradScaler: step(update) runs an update that is not an optimizer's, or skips it", "[optim][grad_scaler]") {
  Problem p;
  optim::SGD opt(p.params(), {.lr = 0.1});  // only whose parameters' gradients unscale_ reads
  optim::GradScaler scaler({.init_scale = 1024});
  int ran = 0;
  const auto update = [&] { ++ran; };

  p.w.set_grad(Tensor());
  p.b.set_grad(Tensor());
  scaler.scale(p.loss()).backward();
  CHECK_THROWS_WITH(scaler.step(update), Contains("call unscale_() first"));
  scaler.unscale_(opt);
  CHECK(scaler.step(update));
  CHECK(ran == 1);
  CHECK_THROWS_WITH(scaler.step(update), Contains("already called since the last update()"));
  scaler.update();
  CHECK(scaler.get_scale() == 1024);

  p.w.set_grad(Tensor());
  p.b.set_grad(Tensor());
  scaler.scale(p.loss()).backward();
  p.b.grad().data<float>()[1] = std::numeric_limits<float>::infinity();  // an overflow
  scaler.unscale_(opt);
  CHECK(!scaler.step(update));
  CHECK(ran == 1);  // skipped
  scaler.update();
  CHECK(scaler.get_scale() == 512);
  CHECK(scaler.skipped_steps() == 1);

  optim::GradScaler off({.enabled = false});
  CHECK(off.step(update));  // a disabled scaler always runs it
  CHECK(ran == 2);
}
