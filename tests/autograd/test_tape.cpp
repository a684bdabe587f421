// The tape's behaviour: accumulation, hooks and their timing, version counters, grad
// mode, error messages, and that the tape does not grow without bound.
#include <thread>

#include "../helpers.h"

using namespace weft;
using test::leaf;

TEST_CASE("backward computes d(sum(x*y))/dx = y and accumulates into .grad", "[tape]") {
  Tensor x = tensor({1.f, 2.f, 3.f}).requires_grad_();
  Tensor y = tensor({4.f, 5.f, 6.f});
  (x * y).sum().backward();
  REQUIRE(x.grad().to_vector<float>() == std::vector<float>{4, 5, 6});
  (x * y).sum().backward();  // a second backward adds to .grad
  REQUIRE(x.grad().to_vector<float>() == std::vector<float>{8, 10, 12});
  REQUIRE_FALSE(y.requires_grad());
  REQUIRE_FALSE(y.grad().defined());
}

TEST_CASE("a leaf used twice gets the sum of both paths", "[tape]") {
  Tensor x = tensor({2.f}).requires_grad_();
  Tensor y = x * x + x * 3.0;  // dy/dx = 2x + 3 = 7
  y.backward();
  REQUIRE(x.grad().item<float>() == Approx(7.0f));
}

TEST_CASE("backward with an explicit gradient for a non-scalar output", "[tape]") {
  Tensor x = tensor({1.f, 2.f}).requires_grad_();
  Tensor y = x * 2.0;
  y.backward(tensor({10.f, 100.f}));
  REQUIRE(x.grad().to_vector<float>() == std::vector<float>{20, 200});
}

TEST_CASE("backward of a non-scalar without a gradient is a clear error", "[tape][errors]") {
  Tensor x = zeros({3, 4}, {.requires_grad = true});
  Tensor y = x * 2.0;
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("backward") && Catch::Contains("(3,4)") &&
                                        Catch::Contains("one-element"));
  REQUIRE_THROWS_WITH(y.backward(ones({4, 3})), Catch::Contains("(4,3)") && Catch::Contains("(3,4)"));
}

TEST_CASE("backward of a tensor that needs no grad is a clear error", "[tape][errors]") {
  Tensor x = ones({2});
  REQUIRE_THROWS_WITH(x.sum().backward(), Catch::Contains("does not require grad"));
}

TEST_CASE("NoGradGuard records nothing", "[tape]") {
  Tensor w = ones({2, 2}, {.requires_grad = true});
  const int64_t before = autograd::tape_size();
  {
    autograd::NoGradGuard guard;
    Tensor y = w.matmul(w).relu();
    REQUIRE_FALSE(y.requires_grad());
    REQUIRE(autograd::tape_size() == before);
  }
  REQUIRE(autograd::is_grad_enabled());
  Tensor z = w * 2.0;
  REQUIRE(z.requires_grad());
  REQUIRE(autograd::tape_size() == before + 1);
}

TEST_CASE("gradient-ready hooks fire the moment a leaf's gradient is final", "[tape][hooks]") {
  // loss = sum(relu(relu(x @ w1) @ w2)): backward reaches w2 before w1. w2's hook must fire
  // before w1's gradient is computed, i.e. in the middle of backward, not at the end.
  Tensor x = leaf({4, 3}, 1).detach();
  Tensor w1 = leaf({3, 5}, 2), w2 = leaf({5, 2}, 3);
  std::vector<std::string> events;
  w1.register_grad_ready_hook([&](const Tensor& p) {
    REQUIRE(p.grad().defined());
    events.push_back("w1");
  });
  w2.register_grad_ready_hook([&](const Tensor& p) {
    REQUIRE(p.grad().defined());
    REQUIRE_FALSE(w1.grad().defined());  // w1's gradient does not exist yet
    events.push_back("w2");
  });
  Tensor loss = x.matmul(w1).relu().matmul(w2).relu().sum();
  loss.backward();
  REQUIRE(events == std::vector<std::string>{"w2", "w1"});
}

TEST_CASE("a hook waits for every contribution of a leaf used in several places", "[tape][hooks]") {
  // w is used by the first and the last op: its gradient is final only after the walk
  // reaches the first op, even though the last op contributes first.
  Tensor w = leaf({3}, 4);
  Tensor v = leaf({3}, 5);
  int fired = 0;
  Tensor grad_at_fire;
  w.register_grad_ready_hook([&](const Tensor& p) {
    ++fired;
    grad_at_fire = p.grad().clone();
  });
  Tensor h = (w * v).tanh();
  Tensor loss = (h * w).sum();
  loss.backward();
  REQUIRE(fired == 1);
  REQUIRE(equal(grad_at_fire, w.grad()));
  // Compare with the full gradient computed without hooks.
  Tensor w2 = w.detach().clone().requires_grad_();
  ((w2 * v.detach()).tanh() * w2).sum().backward();
  REQUIRE(allclose(w.grad(), w2.grad()));
}

TEST_CASE("a hook can modify the gradient (masking, as pruning does)", "[tape][hooks]") {
  Tensor w = ones({4}, {.requires_grad = true});
  Tensor mask = tensor({1.f, 0.f, 1.f, 0.f});
  w.register_grad_ready_hook([&](const Tensor& p) {
    autograd::NoGradGuard g;
    Tensor gr = p.grad();
    gr.mul_(mask);
  });
  (w * 3.0).sum().backward();
  REQUIRE(w.grad().to_vector<float>() == std::vector<float>{3, 0, 3, 0});
}

TEST_CASE("hooks fire even when no gradient flows, and can be removed", "[tape][hooks]") {
  Tensor a = ones({2}, {.requires_grad = true}), b = ones({2}, {.requires_grad = true});
  int fired_b = 0;
  const int id = b.register_grad_ready_hook([&](const Tensor&) { ++fired_b; });
  (a * 2.0 + b * 0.0).sum().backward();
  REQUIRE(fired_b == 1);
  b.remove_grad_ready_hook(id);
  (a * 2.0 + b).sum().backward();
  REQUIRE(fired_b == 1);
}

TEST_CASE("modifying a saved tensor in place is caught at backward", "[tape][version]") {
  Tensor w = ones({3}, {.requires_grad = true});
  Tensor x = tensor({1.f, 2.f, 3.f});
  Tensor y = (w * x).sum();  // mul saves x
  const uint64_t v0 = x.version();
  x.mul_(2.0);
  REQUIRE(x.version() == v0 + 1);
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("backward of mul") && Catch::Contains("modified in place"));
  // The failed backward leaves w usable.
  x = tensor({1.f, 2.f, 3.f});
  (w * x).sum().backward();
  REQUIRE(w.grad().to_vector<float>() == std::vector<float>{1, 2, 3});
}

TEST_CASE("a write through a view bumps the shared version counter", "[tape][version]") {
  Tensor w = ones({2, 2}, {.requires_grad = true});
  Tensor x = ones({2, 2});
  Tensor y = w.matmul(x).sum();
  x.select(0, 1).fill_(5.0);  // writes x's storage through a view
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("matmul") && Catch::Contains("modified in place"));
}

TEST_CASE("exp saves its output: modifying the output is caught", "[tape][version]") {
  Tensor w = zeros({2}, {.requires_grad = true});
  Tensor e = w.exp();
  Tensor loss = e.sum();
  {
    autograd::NoGradGuard g;
    e.add_(1.0);
  }
  REQUIRE_THROWS_WITH(loss.backward(), Catch::Contains("exp"));
}

TEST_CASE("in-place writes into tensors that require grad are refused under grad mode", "[tape][errors]") {
  Tensor w = ones({2}, {.requires_grad = true});
  REQUIRE_THROWS_WITH(w.add_(1.0), Catch::Contains("add_") && Catch::Contains("requires grad"));
  autograd::NoGradGuard g;
  w.add_(1.0);
  REQUIRE(w.to_vector<float>() == std::vector<float>{2, 2});
}

TEST_CASE("backward twice through the same graph is a clear error", "[tape][errors]") {
  Tensor w = ones({2}, {.requires_grad = true});
  Tensor h = w * 2.0;
  Tensor loss = h.sum();
  loss.backward();
  REQUIRE_THROWS_WITH(loss.backward(), Catch::Contains("already freed"));
}

TEST_CASE("retain_grad keeps the gradient of a non-leaf", "[tape]") {
  Tensor w = tensor({1.f, -1.f}).requires_grad_();
  Tensor h = w * 3.0;
  h.retain_grad();
  (h * h).sum().backward();  // d/dh = 2h = (6, -6)
  REQUIRE(h.grad().to_vector<float>() == std::vector<float>{6, -6});
  REQUIRE(w.grad().to_vector<float>() == std::vector<float>{18, -18});
}

TEST_CASE("backward on a leaf itself", "[tape]") {
  Tensor w = ones({3}, {.requires_grad = true});
  w.backward(full({3}, 2.0));
  REQUIRE(w.grad().to_vector<float>() == std::vector<float>{2, 2, 2});
}

TEST_CASE("detach cuts the tape; requires_grad_ only on leaves", "[tape]") {
  Tensor w = ones({2}, {.requires_grad = true});
  Tensor h = w * 2.0;
  REQUIRE_FALSE(h.is_leaf());
  REQUIRE(h.detach().is_leaf());
  REQUIRE_FALSE(h.detach().requires_grad());
  REQUIRE_THROWS_WITH(h.requires_grad_(false), Catch::Contains("only leaf"));
  REQUIRE_THROWS_WITH(arange(3).requires_grad_(), Catch::Contains("floating-point"));
}

TEST_CASE("the tape does not grow without bound when outputs die without backward", "[tape]") {
  Tensor w = ones({8}, {.requires_grad = true});
  for (int i = 0; i < 20000; ++i) {
    Tensor y = (w * 2.0).relu();  // an eval pass with grad on, thrown away
  }
  REQUIRE(autograd::tape_size() < 5000);
  // Graphs still alive are kept and still work.
  Tensor keep = (w * 3.0).sum();
  for (int i = 0; i < 5000; ++i) Tensor y = w * 2.0;
  keep.backward();
  REQUIRE(w.grad().to_vector<float>() == std::vector<float>(8, 3.0f));
}

TEST_CASE("each thread has its own tape", "[tape]") {
  Tensor w1 = ones({4}, {.requires_grad = true}), w2 = ones({4}, {.requires_grad = true});
  std::thread t([&] { (w1 * 5.0).sum().backward(); });
  (w2 * 7.0).sum().backward();
  t.join();
  REQUIRE(w1.grad().to_vector<float>() == std::vector<float>(4, 5.0f));
  REQUIRE(w2.grad().to_vector<float>() == std::vector<float>(4, 7.0f));
}

// BackwardArgs::grad_into: linear adds a later contribution into .grad inside its GEMM
// (raw::addmm_). The sum must be the one separate backwards give, and a .grad zeroed in
// place (DDP's bucket views) must end exactly as one set to none.
TEST_CASE("a weight gradient accumulated inside the GEMM equals the separate sum", "[tape]") {
  Generator g(3);
  Tensor w = randn({6, 5}, {.requires_grad = true}, g), b = randn({6}, {.requires_grad = true}, g);
  const Tensor x1 = randn({4, 5}, {}, g), x2 = randn({3, 5}, {}, g);
  auto loss = [&](const Tensor& x) { Tensor h = linear(x, w, b).relu(); return (h * h).sum(); };
  loss(x1).backward();
  const Tensor g1 = w.grad().clone(), gb1 = b.grad().clone();
  w.set_grad(Tensor()), b.set_grad(Tensor());
  loss(x2).backward();
  const Tensor g2 = w.grad().clone(), gb2 = b.grad().clone();
  w.set_grad(Tensor()), b.set_grad(Tensor());
  loss(x1).backward();
  const uint64_t version = w.grad().version();
  loss(x2).backward();  // this one goes through grad_into
  CHECK(w.grad().version() > version);
  CHECK(allclose(w.grad(), g1 + g2, 1e-6, 1e-6));
  CHECK(allclose(b.grad(), gb1 + gb2, 1e-6, 1e-6));

  autograd::zero_grad({w, b}, /*set_to_none=*/false);  // zeros kept in place
  loss(x2).backward();
  CHECK(equal(w.grad(), g2));
}

// Issue 17: two threads running backward into one shared leaf lost contributions (the
// leaf's accumulation and pending count were unlocked). Every one must land, through
// the plain path (mul) and through the in-place GEMM path (linear's grad_into).
TEST_CASE("backward on several threads into one shared leaf loses nothing", "[tape][threads]") {
  constexpr int kPerThread = 2000;
  Tensor w = zeros({1}, {.requires_grad = true});
  Tensor lw = zeros({4, 3}, {.requires_grad = true});
  const Tensor x = ones({2, 3});
  auto work = [&] {
    ThreadLimit one(1);
    for (int i = 0; i < kPerThread; ++i) {
      (w * 1.0).sum().backward();
      if (i % 4 == 0) linear(x, lw).sum().backward();  // d/dlw = 2 per element per call
    }
  };
  std::thread a(work), b(work);
  a.join(), b.join();
  CHECK(w.grad().item<double>() == 2 * kPerThread);
  CHECK(equal(lw.grad(), full({4, 3}, 2.0 * 2 * (kPerThread / 4))));
}

// Issue 18: a backward split into B now and W later (zero-bubble pipelines).
TEST_CASE("a backward with deferred weight gradients equals the plain one bit for bit", "[tape][deferred]") {
  Generator g(11);
  auto make = [] {
    auto net = std::make_shared<nn::Sequential>();
    net->add<nn::Linear>(6, 8), net->add<nn::ReLU>(), net->add<nn::Linear>(8, 3);
    return net;
  };
  auto plain = make(), split = make();
  split->load_state_dict(plain->state_dict());
  const Tensor x = randn({12, 6}, {}, g), y = randn({12, 3}, {}, g);
  int fired = 0;
  for (Tensor p : split->parameters()) p.register_grad_ready_hook([&](const Tensor&) { ++fired; });
  std::vector<autograd::DeferredGrads> later;
  std::vector<Tensor> input_grads_plain, input_grads_split;
  for (int mb = 0; mb < 3; ++mb) {  // three microbatches: the second and third accumulate
    const Tensor xi = x.narrow(0, 4 * mb, 4), yi = y.narrow(0, 4 * mb, 4);
    Tensor a = xi.detach().clone().requires_grad_(), b = xi.detach().clone().requires_grad_();
    Tensor da = (*plain)(a) - yi, db = (*split)(b) - yi;
    (da * da).sum().backward();
    later.push_back(autograd::backward_deferring((db * db).sum(), Tensor(), split->parameters()));
    CHECK(later.back().size() == 2);  // the two Linear entries
    CHECK(equal(a.grad(), b.grad()));  // B: the input gradient is there at once
    CHECK(fired == 0);                 // the weights wait for W
  }
  later[0].run(), later[1].run();  // W, in microbatch order
  CHECK(fired == 0);               // microbatch 2's parts are still pending
  later[2].run();
  CHECK(fired == 4);  // each weight once, when nothing is pending any more
  const auto p = plain->parameters(), q = split->parameters();
  for (size_t i = 0; i < p.size(); ++i) CHECK(equal(p[i].grad(), q[i].grad()));
}

TEST_CASE("deferred weight gradients that never run are forgotten", "[tape][deferred]") {
  Tensor w = ones({3}, {.requires_grad = true});
  int fired = 0;
  w.register_grad_ready_hook([&](const Tensor&) { ++fired; });
  const Tensor x = full({3}, 2.0);
  {
    auto dropped = autograd::backward_deferring((w * x).sum(), Tensor(), {w});
    CHECK(dropped.size() == 1);
  }
  CHECK_FALSE(w.grad().defined());
  (w * x).sum().backward();  // a plain backward afterwards: nothing waits for the dropped W
  CHECK(fired == 1);
  CHECK(equal(w.grad(), full({3}, 2.0)));
}
