// Modules: the parameter tree, layers against hand-computed values, gradchecks through
// whole modules, train/eval, state dicts.
#include "../helpers.h"
#include "tensor/raw.h"
#include <type_traits>

using namespace weft;
using test::leaf;
using V = std::vector<Tensor>;

namespace {
struct TwoLayer : nn::Module {
  std::shared_ptr<nn::Linear> fc1, fc2;
  TwoLayer() {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(4, 3));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(3, 2, /*bias=*/false));
  }
  Tensor forward(const Tensor& x) override { return (*fc2)((*fc1)(x).relu()); }
};

// Copies float64 versions of a module's parameters in, so gradcheck can perturb them.
void to_double(nn::Module& m) {
  for (auto& [name, p] : m.named_parameters()) {
    Tensor d = p.detach().to(kFloat64);
    TensorImpl* impl = p.impl();
    impl->storage = d.storage();
    impl->dtype = kFloat64;
  }
}
}  // namespace

TEST_CASE("named parameters form a dotted tree in registration order", "[nn]") {
  TwoLayer net;
  auto named = net.named_parameters();
  REQUIRE(named.size() == 3);
  REQUIRE(named[0].first == "fc1.weight");
  REQUIRE(named[1].first == "fc1.bias");
  REQUIRE(named[2].first == "fc2.weight");
  REQUIRE(named[0].second.shape() == Shape{3, 4});
  REQUIRE(net.num_parameters() == 12 + 3 + 6);
  for (const Tensor& p : net.parameters()) REQUIRE((p.requires_grad() && p.is_leaf()));
  nn::Sequential seq{std::make_shared<nn::Linear>(2, 2), std::make_shared<nn::ReLU>(),
                     std::make_shared<nn::Linear>(2, 1)};
  auto sn = seq.named_parameters();
  REQUIRE(sn[0].first == "0.weight");
  REQUIRE(sn[2].first == "2.weight");
  REQUIRE_THAT(seq.repr(), Catch::Contains("(1): ReLU()") && Catch::Contains("Linear(in_features=2"));
}

TEST_CASE("Linear computes x W^T + b (hand-computed)", "[nn]") {
  nn::Linear fc(2, 3);
  {
    autograd::NoGradGuard g;
    fc.weight.copy_(tensor({1.f, 2.f, 3.f, 4.f, 5.f, 6.f}, {3, 2}));
    fc.bias.copy_(tensor({0.5f, -0.5f, 1.f}));
  }
  Tensor y = fc(tensor({1.f, -1.f, 2.f, 0.f}, {2, 2}));
  REQUIRE(y.to_vector<float>() == std::vector<float>{-0.5f, -1.5f, 0.f, 2.5f, 5.5f, 11.f});
  // Leading dims pass through: (2, 5, 2) -> (2, 5, 3)
  REQUIRE(fc(ones({2, 5, 2})).shape() == Shape{2, 5, 3});
  REQUIRE_THROWS_WITH(fc(ones({4, 3})), Catch::Contains("Linear(2, 3)") && Catch::Contains("(4,3)"));
}

TEST_CASE("default init matches PyTorch's bounds", "[nn][init]") {
  manual_seed(0);
  nn::Linear fc(400, 300);
  const double bound = 1.0 / std::sqrt(400.0);
  REQUIRE(fc.weight.max().item<double>() <= bound);
  REQUIRE(fc.weight.min().item<double>() >= -bound);
  REQUIRE(fc.weight.max().item<double>() > 0.95 * bound);
  // U(-b, b) has variance b^2 / 3
  REQUIRE((fc.weight * fc.weight).mean().item<double>() == Approx(bound * bound / 3).epsilon(0.02));
  nn::Conv2d conv(16, 32, 3);
  const double cb = 1.0 / std::sqrt(16.0 * 9);
  REQUIRE(conv.weight.abs().max().item<double>() <= cb);
  REQUIRE(conv.bias.abs().max().item<double>() <= cb);
  Tensor w = empty({200, 100});
  nn::init::kaiming_normal_(w, 0.0, true, nn::init::Nonlinearity::ReLU);
  REQUIRE((w * w).mean().item<double>() == Approx(2.0 / 100).epsilon(0.05));
  nn::init::xavier_uniform_(w);
  REQUIRE((w * w).mean().item<double>() == Approx(2.0 / 300).epsilon(0.05));
  REQUIRE(nn::init::gain(nn::init::Nonlinearity::Tanh) == Approx(5.0 / 3));
}

TEST_CASE("gradcheck through whole modules", "[nn][gradcheck]") {
  TwoLayer net;
  to_double(net);
  Tensor x = leaf({5, 4}, 3);
  auto params = net.parameters();
  V inputs = {x};
  inputs.insert(inputs.end(), params.begin(), params.end());
  REQUIRE_GRADCHECK([&](const V&) { return net(x); }, inputs);

  nn::Conv2d conv(2, 4, nn::Conv2dOptions{.kernel_size = {3, 3}, .stride = {2, 2}, .padding = {1, 1}, .groups = 2});
  to_double(conv);
  Tensor img = leaf({2, 2, 5, 5}, 4);
  REQUIRE_GRADCHECK([&](const V&) { return conv(img).relu().sum({2, 3}); }, {img, conv.weight, conv.bias});
}

TEST_CASE("cross_entropy: value, label smoothing, gradcheck, errors", "[nn][loss]") {
  Tensor logits = tensor({1.0, 2.0, 3.0, 1.0, 1.0, 1.0}, {2, 3}, {.dtype = kFloat64});
  Tensor y = tensor({2, 0});
  // row 0: -log(e^3 / (e + e^2 + e^3)) = 0.40760596; row 1: log 3 = 1.09861229
  REQUIRE(nn::cross_entropy(logits, y).item<double>() == Approx((0.40760596 + 1.09861229) / 2));
  // smoothing 0.1 on row 1 (uniform logits) leaves log 3; on row 0 adds 0.1 * (mean -logp - -logp_y)
  const double mean_nlp0 = (2.40760596 + 1.40760596 + 0.40760596) / 3;
  REQUIRE(nn::cross_entropy(logits, y, 0.1).item<double>() ==
          Approx((0.9 * 0.40760596 + 0.1 * mean_nlp0 + 1.09861229) / 2));
  // Agrees with the unfused log_softmax + nll.
  Tensor x = leaf({6, 5}, 5);
  Tensor t = tensor({0, 4, 2, 2, 1, 3});
  REQUIRE(nn::cross_entropy(x, t).item<double>() == Approx(nn::nll_loss(x.log_softmax(1), t).item<double>()));
  REQUIRE_GRADCHECK([&](const V& v) { return nn::cross_entropy(v[0], t); }, {x});
  REQUIRE_GRADCHECK([&](const V& v) { return nn::cross_entropy(v[0], t, 0.2); }, {x});
  REQUIRE_GRADCHECK([&](const V& v) { return nn::nll_loss(v[0].log_softmax(1), t); }, {x});
  REQUIRE_GRADCHECK([&](const V& v) { return nn::mse_loss(v[0], v[1]); }, {x, leaf({6, 5}, 6)});
  REQUIRE_THROWS_WITH(nn::cross_entropy(x, tensor({0, 5, 1, 1, 1, 1})), Catch::Contains("target 5"));
  REQUIRE_THROWS_WITH(nn::cross_entropy(x, tensor({0, 1})), Catch::Contains("(2)") && Catch::Contains("(6,5)"));
  REQUIRE_THROWS_WITH(nn::mse_loss(x, ones({6})), Catch::Contains("mse_loss"));
}

TEST_CASE("BatchNorm2d: normalises in training, uses running stats in eval", "[nn][batchnorm]") {
  nn::BatchNorm2d bn(3);
  Generator g(2);
  Tensor x = randn({8, 3, 4, 4}, {}, g) * 3.0 + 5.0;
  Tensor y = bn(x);
  Tensor m = y.mean({0, 2, 3}), v = (y * y).mean({0, 2, 3});
  REQUIRE(allclose(m, zeros({3}), 0, 1e-5));
  REQUIRE(allclose(v, ones({3}), 0, 1e-3));
  // running stats moved 10% of the way to the batch stats
  Tensor bm = x.mean({0, 2, 3});
  REQUIRE(allclose(bn.running_mean, bm * 0.1, 1e-5, 1e-5));
  REQUIRE(bn.num_batches_tracked.item<int64_t>() == 1);
  bn.eval();
  Tensor ye = bn(x);
  Tensor want = (x - bn.running_mean.reshape({1, 3, 1, 1})) / (bn.running_var.reshape({1, 3, 1, 1}) + 1e-5).sqrt();
  REQUIRE(allclose(ye, want, 1e-5, 1e-5));
  // gradcheck in training mode, float64
  nn::BatchNorm2d bn64(2);
  to_double(bn64);
  for (auto& [_, b] : bn64.named_buffers())
    if (b.dtype() == kFloat32) b.impl()->storage = b.to(kFloat64).storage(), b.impl()->dtype = kFloat64;
  Tensor xi = leaf({3, 2, 2, 2}, 7);
  REQUIRE_GRADCHECK([&](const V& v) { return (bn64(v[0]) * v[0]).sum(); }, {xi, bn64.weight, bn64.bias});
}

TEST_CASE("Dropout, Flatten, pooling modules and train/eval", "[nn]") {
  nn::Sequential seq{std::make_shared<nn::MaxPool2d>(2), std::make_shared<nn::Flatten>(),
                     std::make_shared<nn::Dropout>(0.5)};
  Tensor x = ones({2, 3, 4, 4});
  seq.eval();
  Tensor y = seq(x);
  REQUIRE(y.shape() == Shape{2, 12});
  REQUIRE(equal(y, ones({2, 12})));  // eval: dropout is the identity
  seq.train();
  Tensor z = seq(x);
  const double zeros_frac = (z.eq(zeros({1}))).to(kFloat32).mean().item<double>();
  REQUIRE(zeros_frac > 0.2);
  REQUIRE(zeros_frac < 0.8);
  REQUIRE(nn::AvgPool2d(2)(x).shape() == Shape{2, 3, 2, 2});
}

TEST_CASE("state_dict round trip and strict loading errors name every bad key", "[nn][state]") {
  TwoLayer a, b;
  auto sd = a.state_dict();
  REQUIRE(sd.size() == 3);
  b.load_state_dict(sd);
  for (size_t i = 0; i < sd.size(); ++i) REQUIRE(equal(b.state_dict()[i].second, sd[i].second));
  // Loading copies values: later changes to a do not leak into b.
  {
    autograd::NoGradGuard g;
    a.fc1->weight.fill_(9.0);
  }
  REQUIRE_FALSE(equal(b.fc1->weight, a.fc1->weight));

  nn::NamedTensors bad = {{"fc1.weight", zeros({3, 5})}, {"fc1.bias", zeros({3})}, {"fc3.weight", zeros({1})}};
  try {
    b.load_state_dict(bad);
    FAIL("no error");
  } catch (const Error& e) {
    const std::string msg = e.what();
    REQUIRE_THAT(msg, Catch::Contains("fc1.weight (checkpoint (3,5), model (3,4))"));
    REQUIRE_THAT(msg, Catch::Contains("missing keys: fc2.weight"));
    REQUIRE_THAT(msg, Catch::Contains("unexpected keys: fc3.weight"));
  }
  // Nothing was modified by the failed load.
  REQUIRE(equal(b.state_dict()[1].second, sd[1].second));
  // Non-strict: missing and unexpected keys are fine, shapes still checked.
  b.load_state_dict({{"fc1.bias", full({3}, 2.0)}, {"extra", zeros({1})}}, /*strict=*/false);
  REQUIRE(b.fc1->bias.to_vector<float>() == std::vector<float>{2, 2, 2});
}

TEST_CASE("zero_grad and to(device) keep handles valid", "[nn]") {
  TwoLayer net;
  net(ones({1, 4})).sum().backward();
  REQUIRE(net.fc1->weight.grad().defined());
  net.zero_grad(false);
  REQUIRE(net.fc1->weight.grad().sum().item<float>() == 0.0f);
  net.zero_grad();
  REQUIRE_FALSE(net.fc1->weight.grad().defined());
  Tensor handle = net.parameters()[0];
  net.to(Device("cpu:1"));
  REQUIRE(handle.device() == Device::cpu(1));
  REQUIRE(net(ones({1, 4}, {.device = Device("cpu:1")})).device() == Device::cpu(1));
}

// A ReLU followed by a MaxPool2d runs fused (relu_max_pool2d); the results and every
// gradient must be those of the two layers run one after the other.
TEST_CASE("Sequential: the fused ReLU + MaxPool2d gives the unfused values and gradients", "[nn]") {
  manual_seed(3);
  auto make = [] {
    return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Conv2d>(2, 4, 3, 1, 1), std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2),
        std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(4 * 3 * 3, 3)});
  };
  auto fused = make(), plain = make();
  plain->load_state_dict(fused->state_dict());
  plain->set_fusion(false);
  Tensor x = randn({5, 2, 7, 6});
  // The fused run records one tape entry fewer (one op where there were two).
  const int64_t before = autograd::tape_size();
  Tensor yf = fused->forward(x);
  const int64_t fused_entries = autograd::tape_size() - before;
  Tensor yp = plain->forward(x);
  const int64_t plain_entries = autograd::tape_size() - before - fused_entries;
  CHECK(fused_entries + 1 == plain_entries);
  CHECK(yf.to_vector<float>() == yp.to_vector<float>());
  yf.sum().backward();
  yp.sum().backward();
  const auto pf = fused->named_parameters(), pp = plain->named_parameters();
  REQUIRE(pf.size() == pp.size());
  for (size_t i = 0; i < pf.size(); ++i) {
    INFO(pf[i].first);
    CHECK(pf[i].second.grad().to_vector<float>() == pp[i].second.grad().to_vector<float>());
  }
}

TEST_CASE("Linear with a non-positive size names both sizes", "[nn][errors]") {
  CHECK_THROWS_WITH(nn::Linear(3, -1), Catch::Contains("Linear: features must be positive, got in=3 out=-1"));
  CHECK_THROWS_WITH(nn::Linear(-2, 4), Catch::Contains("Linear: features must be positive, got in=-2 out=4"));
  CHECK_THROWS_WITH(nn::Linear(0, 4), Catch::Contains("got in=0 out=4"));
}

TEST_CASE("Size2 options: one number means both sizes, two mean (h, w)", "[nn]") {
  // The trap std::array<int64_t, 2> had: {.kernel_size = {3, 3}, .padding = 1} gave
  // padding (1, 0) and a 28x26 output for a 28x28 input.
  nn::Conv2d same(1, 2, nn::Conv2dOptions{.kernel_size = {3, 3}, .padding = 1});
  CHECK(same.forward(zeros({1, 1, 28, 28})).shape() == Shape{1, 2, 28, 28});
  nn::Conv2d wide(1, 2, nn::Conv2dOptions{.kernel_size = {3, 5}, .padding = {1, 2}});
  CHECK(wide.forward(zeros({1, 1, 28, 28})).shape() == Shape{1, 2, 28, 28});
  nn::Conv2d strided(1, 2, nn::Conv2dOptions{.kernel_size = 3, .stride = 2});
  CHECK(strided.forward(zeros({1, 1, 9, 9})).shape() == Shape{1, 2, 4, 4});
  const raw::Pool2dParams pool{.kernel = 3, .stride = 1, .padding = 1};
  CHECK((pool.kernel == Size2{3, 3} && pool.padding == Size2(1, 1)));
  static_assert(!std::is_constructible_v<Size2, int64_t, int64_t, int64_t>, "three sizes do not compile");
  static_assert(Size2(4)[1] == 4 && Size2(2, 5)[1] == 5);
}

TEST_CASE("Sequential from shared_ptrs of any module, and add<T>(args...)", "[nn]") {
  nn::Sequential a(std::make_shared<nn::Linear>(4, 3), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(3, 2));
  nn::Sequential b;
  auto first = b.add<nn::Linear>(4, 3);
  b.add<nn::ReLU>();
  b.add<nn::Linear>(3, 2);
  REQUIRE(a.size() == 3);
  REQUIRE(b.size() == 3);
  CHECK(b[0] == first);
  const auto names = b.named_parameters();
  REQUIRE(names.size() == 4);
  CHECK(names[0].first == "0.weight");
  CHECK(names[3].first == "2.bias");
  CHECK(b.forward(zeros({5, 4})).shape() == Shape{5, 2});
}

// nn/linear.h, THE TRANSPOSED WEIGHT: inside a scope a Linear keeps W^T while W is
// unchanged, follows every in-place change of W, and frees it when the scope ends.
TEST_CASE("Linear keeps a transposed weight only inside a TransposedWeightScope", "[nn][linear]") {
  Generator g(5);
  nn::Linear fc(7, 5);
  const Tensor x = randn({3, 7}, {}, g), big = randn({nn::Linear::kTransposeMaxRows + 1, 7}, {}, g);
  const Tensor plain = fc(x);
  CHECK_FALSE(fc.holds_transposed_weight());  // outside a scope: nothing kept
  {
    nn::TransposedWeightScope scope;
    CHECK(allclose(fc(x), plain, 1e-6, 1e-6));
    CHECK(fc.holds_transposed_weight());
    {
      autograd::NoGradGuard no_grad;
      fc.weight.mul_(2.0);  // an in-place change bumps the version: the copy is remade
    }
    const Tensor bias = fc.bias.detach().unsqueeze(0);
    CHECK(allclose(fc(x), (plain - bias) * 2.0 + bias, 1e-5, 1e-5));
    {
      nn::TransposedWeightScope nested;  // part of the outer scope
    }
    CHECK(fc.holds_transposed_weight());
    fc.weight = randn({5, 7}, {.requires_grad = true}, g);  // a new tensor altogether
    CHECK(allclose(fc(x), raw::linear(x, fc.weight, fc.bias), 1e-6, 1e-6));
    nn::Linear other(7, 5);
    other(big);  // too many rows to be worth a copy
    CHECK_FALSE(other.holds_transposed_weight());
    other.keep_transposed_weight = false;
    other(x);
    CHECK_FALSE(other.holds_transposed_weight());
  }
  CHECK_FALSE(fc.holds_transposed_weight());  // freed with the scope
}

TEST_CASE("Linear's gradients inside a TransposedWeightScope are the plain ones", "[nn][linear]") {
  Generator g(6);
  nn::Linear a(6, 4), b(6, 4);
  b.weight.detach().copy_(a.weight), b.bias.detach().copy_(a.bias);
  const Tensor x = randn({5, 6}, {.requires_grad = true}, g), x2 = x.detach().clone().requires_grad_();
  Tensor h = a(x);
  (h * h).sum().backward();
  {
    nn::TransposedWeightScope scope;
    Tensor h = b(x2);
    (h * h).sum().backward();
  }
  CHECK(allclose(a.weight.grad(), b.weight.grad(), 1e-5, 1e-6));
  CHECK(allclose(a.bias.grad(), b.bias.grad(), 1e-5, 1e-6));
  CHECK(allclose(x.grad(), x2.grad(), 1e-5, 1e-6));
}

namespace summary_test {
// A module of a user's own, in a namespace of its own: a residual block.
struct Block : weft::nn::Module {
  std::shared_ptr<weft::nn::Linear> fc;
  std::shared_ptr<weft::nn::LayerNorm> norm;
  weft::Tensor& gate;
  Block()
      : fc(register_module("fc", std::make_shared<weft::nn::Linear>(4, 4))),
        norm(register_module("norm", std::make_shared<weft::nn::LayerNorm>(std::vector<int64_t>{4}))),
        gate(register_parameter("gate", weft::ones({1}))) {}
  weft::Tensor forward(const weft::Tensor& x) override { return x + norm->forward(fc->forward(x)) * gate; }
};
}  // namespace summary_test

// Issue 19: a researcher's own module prints as itself, and summary() counts per layer.
TEST_CASE("a custom module prints its class and children; summary counts parameters per layer", "[nn][summary]") {
  summary_test::Block block;
  CHECK(block.type_name() == "Block");
  const std::string r = block.repr();
  CHECK(r.rfind("Block(\n", 0) == 0);
  CHECK_THAT(r, Catch::Matchers::Contains("  (fc): Linear(in_features=4, out_features=4, bias=true)"));
  CHECK_THAT(r, Catch::Matchers::Contains("  (norm): LayerNorm((4), eps=1e-05, elementwise_affine=True)"));
  const std::string s = nn::summary(block);
  INFO(s);
  CHECK_THAT(s, Catch::Matchers::Contains("(model)  Block                            1"));  // its own gate
  CHECK_THAT(s, Catch::Matchers::Contains("fc       Linear                          20"));
  CHECK_THAT(s, Catch::Matchers::Contains("norm     LayerNorm                        8"));
  CHECK_THAT(s, Catch::Matchers::Contains("total                                    29  (116 B)"));
  auto net = std::make_shared<nn::Sequential>();
  net->add<nn::Linear>(784, 512), net->add<nn::ReLU>();
  CHECK_THAT(nn::summary(*net), Catch::Matchers::Contains("0      Linear                     401,920\n1      ReLU                             0"));
}
