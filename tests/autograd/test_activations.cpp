// GELU (exact and tanh), SiLU, LeakyReLU and Softplus: values and gradients against
// references computed with mpmath at 40 digits, finite-difference gradchecks in float64,
// PyTorch's edge cases (NaN, infinities, leaky_relu at 0, softplus's threshold), the nn
// modules, and the CUDA kernels against the CPU ones (skipped where no GPU is visible).
#include <cmath>
#include <functional>
#include <limits>

#include "../helpers.h"

using namespace weft;
using test::leaf;
using V = std::vector<Tensor>;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

// A 1-D tensor of the given values.
Tensor vals(const std::vector<double>& v, DType dt = kFloat64, bool requires_grad = false) {
  return tensor(v, {static_cast<int64_t>(v.size())}, {.dtype = dt, .requires_grad = requires_grad});
}

// f(x) and d sum(f(x)) / dx at the points xs, through the tape.
std::pair<std::vector<double>, std::vector<double>> value_and_grad(const std::function<Tensor(const Tensor&)>& f,
                                                                   const std::vector<double>& xs,
                                                                   DType dt = kFloat64) {
  Tensor x = vals(xs, dt, /*requires_grad=*/true);
  Tensor y = f(x);
  y.sum().backward();
  return {test::vec(y), test::vec(x.grad())};
}

// |got - want| within tol, relative to 1 + |want|; NaN only where NaN is wanted.
void require_close(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
    if (std::isnan(want[i]))
      REQUIRE(std::isnan(got[i]));
    else if (std::isinf(want[i]))
      REQUIRE(got[i] == want[i]);
    else
      REQUIRE(std::abs(got[i] - want[i]) <= tol * (1 + std::abs(want[i])));
  }
}

// An activation under test with its references at kPoints.
struct Reference {
  const char* name;
  std::function<Tensor(const Tensor&)> f;
  std::vector<double> value, grad;
};

const std::vector<double> kPoints = {-3, -1, -0.5, 0, 0.5, 1, 2};

// mpmath at 40 digits, rounded to 17: x Phi(x) with Phi through erf; the tanh form with
// PyTorch's constants sqrt(2/pi) and 0.044715; x / (1 + e^-x); log(1 + e^x).
std::vector<Reference> references() {
  return {
      {"gelu",
       [](const Tensor& x) { return gelu(x); },
       {-0.0040496940948902836, -0.15865525393145705, -0.15426876936299345, 0.0, 0.34573123063700655,
        0.84134474606854295, 1.9544997361036416},
       {-0.011945647204183927, -0.083315470587686298, 0.13250487534383716, 0.5, 0.86749512465616284,
        1.0833154705876863, 1.0852318010781969}},
      {"gelu tanh",
       [](const Tensor& x) { return gelu(x, "tanh"); },
       {-0.0036373920817730188, -0.1588080093917233, -0.15428599017485608, 0.0, 0.34571400982514392,
        0.8411919906082767, 1.954597694087775},
       {-0.011584166630969726, -0.082964083845782555, 0.13263009646535769, 0.5, 0.86736990353464231,
        1.0829640838457826, 1.0860992566236184}},
      {"silu",
       [](const Tensor& x) { return silu(x); },
       {-0.14227761953270034, -0.26894142136999512, -0.18877033439907272, 0.0, 0.31122966560092728,
        0.73105857863000488, 1.7615941559557649},
       {-0.088104106015169617, 0.072329488128513268, 0.26003881269734819, 0.5, 0.73996118730265181,
        0.92767051187148673, 1.0907842487848955}},
      {"softplus",
       [](const Tensor& x) { return softplus(x); },
       {0.048587351573742059, 0.31326168751822283, 0.47407698418010668, 0.69314718055994531, 0.97407698418010668,
        1.3132616875182228, 2.1269280110429725},
       {0.047425873177566781, 0.26894142136999512, 0.37754066879814544, 0.5, 0.62245933120185456,
        0.73105857863000488, 0.88079707797788244}},
  };
}

}  // namespace

TEST_CASE("activations: values and gradients against mpmath references", "[activations]") {
  for (const Reference& r : references()) {
    INFO(r.name);
    auto [y, g] = value_and_grad(r.f, kPoints);
    require_close(y, r.value, 1e-15);
    require_close(g, r.grad, 1e-15);
    // float32: the same formulas in float arithmetic (expf, erff, tanhf, log1pf)
    auto [y32, g32] = value_and_grad(r.f, kPoints, kFloat32);
    require_close(y32, r.value, 1e-6);
    require_close(g32, r.grad, 1e-6);
  }
  // The Tensor methods are the free functions.
  const Tensor x = vals(kPoints);
  REQUIRE(test::vec(x.gelu()) == test::vec(gelu(x)));
  REQUIRE(test::vec(x.gelu("tanh")) == test::vec(gelu(x, "tanh")));
  REQUIRE(test::vec(x.silu()) == test::vec(silu(x)));
  REQUIRE(test::vec(x.leaky_relu(0.3)) == test::vec(leaky_relu(x, 0.3)));
  REQUIRE(test::vec(x.softplus(2, 3)) == test::vec(softplus(x, 2, 3)));
}

TEST_CASE("activations: leaky_relu takes the slope at x <= 0, gradient included", "[activations]") {
  for (double slope : {0.01, 0.2, -0.5}) {
    INFO("slope " << slope);
    auto [y, g] = value_and_grad([slope](const Tensor& x) { return leaky_relu(x, slope); }, {-2, -0.0, 0, 3});
    REQUIRE(y == std::vector<double>{-2 * slope, 0, 0, 3});
    // PyTorch's leaky_relu_backward: x > 0 ? grad : grad * slope, so x = 0 (and -0) gets the slope
    REQUIRE(g == std::vector<double>{slope, slope, slope, 1});
    REQUIRE(std::signbit(y[1]) == (slope > 0));  // -0 * slope
  }
  auto [y, g] = value_and_grad([](const Tensor& x) { return leaky_relu(x); }, {-100});  // default slope 0.01
  REQUIRE(y[0] == -100 * 0.01);
  REQUIRE(g[0] == 0.01);
}

TEST_CASE("activations: softplus returns x itself above its threshold", "[activations]") {
  // beta x > threshold: x exactly, gradient exactly 1
  auto [y, g] = value_and_grad([](const Tensor& x) { return softplus(x); }, {20.5, 25, 1e6});
  REQUIRE(y == std::vector<double>{20.5, 25, 1e6});
  REQUIRE(g == std::vector<double>{1, 1, 1});
  auto [y32, g32] = value_and_grad([](const Tensor& x) { return softplus(x); }, {30, 1e30}, kFloat32);
  REQUIRE(y32 == std::vector<double>{30, 1e30f});
  REQUIRE(g32 == std::vector<double>{1, 1});
  // beta = 2, threshold = 20: beta x = 21 is above (x itself), beta x = 20 is not
  // (log(1 + e^20) / 2 = 10.000000001030577, gradient sigmoid(20)); beta x = 2 below.
  auto [yb, gb] = value_and_grad([](const Tensor& x) { return softplus(x, 2.0, 20.0); }, {10.5, 10, 1});
  require_close(yb, {10.5, 10.000000001030577, 1.0634640055214862}, 1e-15);
  REQUIRE(yb[0] == 10.5);
  require_close(gb, {1, 0.99999999793884638, 0.88079707797788244}, 1e-15);
  // Far below: log1p keeps the tiny value to full relative precision (log(1 + e^-50)).
  auto [ys, gs] = value_and_grad([](const Tensor& x) { return softplus(x); }, {-50});
  REQUIRE(std::abs(ys[0] / 1.9287498479639178e-22 - 1) < 1e-14);
  REQUIRE(std::abs(gs[0] / 1.9287498479639178e-22 - 1) < 1e-14);
}

TEST_CASE("activations: NaN in gives NaN out and a NaN gradient (leaky_relu: the slope)", "[activations]") {
  for (DType dt : {kFloat32, kFloat64}) {
    INFO(dt);
    for (const Reference& r : references()) {
      INFO(r.name);
      auto [y, g] = value_and_grad(r.f, {kNaN, 1}, dt);
      REQUIRE(std::isnan(y[0]));
      REQUIRE(std::isnan(g[0]));
      REQUIRE_FALSE(std::isnan(y[1]));  // only the NaN element
    }
    // PyTorch's leaky_relu passes NaN through and gives it the slope as its gradient
    // (NaN > 0 is false), as relu's gradient at NaN is 1 rather than NaN.
    auto [y, g] = value_and_grad([](const Tensor& x) { return leaky_relu(x, 0.25); }, {kNaN}, dt);
    REQUIRE(std::isnan(y[0]));
    REQUIRE(g[0] == 0.25);
  }
}

TEST_CASE("activations: infinities follow PyTorch's formulas", "[activations]") {
  auto value = [](const std::function<Tensor(const Tensor&)>& f) { return test::vec(f(vals({-kInf, kInf}))); };
  // gelu(-inf) = -inf * 0 = NaN, as PyTorch's (its CPU float gelu also gives NaN at +inf,
  // pytorch/pytorch#185770; here +inf * 1 = +inf)
  require_close(value([](const Tensor& x) { return gelu(x); }), {kNaN, kInf}, 0);
  require_close(value([](const Tensor& x) { return gelu(x, "tanh"); }), {kNaN, kInf}, 0);
  require_close(value([](const Tensor& x) { return silu(x); }), {kNaN, kInf}, 0);  // -inf / inf
  require_close(value([](const Tensor& x) { return leaky_relu(x); }), {-kInf, kInf}, 0);
  require_close(value([](const Tensor& x) { return softplus(x); }), {0, kInf}, 0);
}

TEST_CASE("gradcheck: activations", "[gradcheck][activations]") {
  Tensor a = leaf({3, 4}, 31), b = leaf({4, 3}, 32);
  const std::vector<std::pair<const char*, std::function<Tensor(const Tensor&)>>> ops = {
      {"gelu", [](const Tensor& x) { return gelu(x); }},
      {"gelu tanh", [](const Tensor& x) { return gelu(x, "tanh"); }},
      {"silu", [](const Tensor& x) { return silu(x); }},
      {"leaky_relu", [](const Tensor& x) { return leaky_relu(x); }},
      {"leaky_relu 0.2", [](const Tensor& x) { return leaky_relu(x, 0.2); }},
      {"leaky_relu -0.5", [](const Tensor& x) { return leaky_relu(x, -0.5); }},
      {"softplus", [](const Tensor& x) { return softplus(x); }},
      {"softplus beta 0.5", [](const Tensor& x) { return softplus(x, 0.5); }},
      // the kink at beta x = 1 (x = 0.5) splits these random points between both branches
      {"softplus beta 2 threshold 1", [](const Tensor& x) { return softplus(x, 2.0, 1.0); }},
  };
  for (const auto& op : ops) {  // not a structured binding: clang 14 (the ASan build) cannot capture one
    const auto& f = op.second;
    INFO(op.first);
    REQUIRE_GRADCHECK([f](const V& v) { return f(v[0]); }, {a});
    // non-contiguous input, and an activation inside a larger expression
    REQUIRE_GRADCHECK([f](const V& v) { return f(v[0].t()) * v[1]; }, {a, b});
    REQUIRE_GRADCHECK([f](const V& v) { return f(v[0] * 3.0).sum(1); }, {a});
  }
}

TEST_CASE("activations: gelu takes approximate 'none' or 'tanh' only", "[activations]") {
  const Tensor x = vals({1});
  REQUIRE_THROWS_WITH(gelu(x, "erf"), "gelu: approximate must be 'none' or 'tanh', got 'erf'");
  REQUIRE_THROWS_WITH(nn::GELU("Tanh"), "GELU: approximate must be 'none' or 'tanh', got 'Tanh'");
  REQUIRE_THROWS_WITH(silu(vals({1}).to(kInt64)), "silu: expected a floating-point tensor, got int64");
}

TEST_CASE("nn activation modules: forward, repr, make_fresh", "[activations][nn]") {
  const Tensor x = leaf({2, 5}, 33).detach();
  nn::GELU gelu_exact, gelu_tanh("tanh");
  nn::SiLU si;
  nn::LeakyReLU lr, lr2(0.2);
  nn::Softplus sp, sp2(2.0, 5.0);
  REQUIRE(test::vec(gelu_exact(x)) == test::vec(gelu(x)));
  REQUIRE(test::vec(gelu_tanh(x)) == test::vec(gelu(x, "tanh")));
  REQUIRE(test::vec(si(x)) == test::vec(silu(x)));
  REQUIRE(test::vec(lr(x)) == test::vec(leaky_relu(x, 0.01)));
  REQUIRE(test::vec(lr2(x)) == test::vec(leaky_relu(x, 0.2)));
  REQUIRE(test::vec(sp(x)) == test::vec(softplus(x, 1.0, 20.0)));
  REQUIRE(test::vec(sp2(x)) == test::vec(softplus(x, 2.0, 5.0)));

  REQUIRE(gelu_exact.repr() == "GELU(approximate='none')");
  REQUIRE(gelu_tanh.repr() == "GELU(approximate='tanh')");
  REQUIRE(si.repr() == "SiLU()");
  REQUIRE(lr.repr() == "LeakyReLU(negative_slope=0.01)");
  REQUIRE(sp2.repr() == "Softplus(beta=2, threshold=5)");
  for (const nn::Module* m : std::initializer_list<const nn::Module*>{&gelu_tanh, &si, &lr2, &sp2})
    REQUIRE(m->make_fresh()->repr() == m->repr());

  // Gradients flow through a Sequential of them.
  nn::Sequential seq{std::make_shared<nn::GELU>("tanh"), std::make_shared<nn::SiLU>(),
                     std::make_shared<nn::LeakyReLU>(0.1), std::make_shared<nn::Softplus>()};
  REQUIRE_THAT(seq.repr(), Catch::Contains("(0): GELU(approximate='tanh')") && Catch::Contains("(3): Softplus("));
  REQUIRE_GRADCHECK([&seq](const V& v) { return seq(v[0]); }, {leaf({3, 4}, 34)});
}

// ---- CUDA against the CPU ---------------------------------------------------------------

namespace {

// max |a - b| / (1 + |b|) with a from the GPU and b from the CPU; NaNs and infinities
// must sit in the same places.
double max_err(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> x = a.to(kCPU).to_vector<double>(), y = b.to_vector<double>();
  double e = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) || std::isnan(y[i])) {
      if (std::isnan(x[i]) != std::isnan(y[i])) return kInf;
      continue;
    }
    if (x[i] == y[i]) continue;  // equal infinities
    e = std::max(e, std::abs(x[i] - y[i]) / (1 + std::abs(y[i])));
  }
  return e;
}

// Inputs of several sizes and layouts: a contiguous base (random, or with the edge cases
// planted) and the view the kernels see, made on each device so that the GPU kernels get
// the same strides as the CPU loops.
struct Layout {
  std::string name;
  Tensor base;
  std::function<Tensor(const Tensor&)> view;
};
std::vector<Layout> layouts(DType dt) {
  Generator gen(35);
  const auto r = [&](const Shape& s) { return (randn(s, {.dtype = kFloat64}, gen) * 4.0).to(dt); };
  const auto same = [](const Tensor& t) { return t; };
  Tensor edges = vals({kNaN, kInf, -kInf, 0.0, -0.0, 1e-30, -1e-30, 19.99, 20.0, 20.01, 30, -30, 88, -88, 200, -200},
                      dt);
  return {{"edge values", edges, same},
          {"contiguous 1", r({1}), same},
          {"contiguous 7", r({7}), same},
          {"contiguous 1000003", r({1000003}), same},
          {"transposed", r({19, 23}), [](const Tensor& t) { return t.t(); }},
          {"sliced", r({9, 40}), [](const Tensor& t) { return t.slice(1, 3, 40, 3); }},
          {"expanded", r({1, 29}), [](const Tensor& t) { return t.expand({31, 29}); }}};
}

}  // namespace

TEST_CASE("cuda: activations and their backwards match the CPU", "[cuda][activations]") {
  if (!cuda::is_available()) {
    WARN("SKIP the CUDA activation checks: no GPU is visible");
    return;
  }
  const Device gpu = Device::cuda(0);
  using A = raw::InputActivation;
  const std::vector<std::pair<A, raw::ActivationParams>> acts = {
      {A::Gelu, {}},         {A::GeluTanh, {}},  {A::Silu, {}}, {A::LeakyRelu, {}}, {A::LeakyRelu, {.negative_slope = 0.3}},
      {A::Softplus, {}},     {A::Softplus, {.beta = 2.0, .threshold = 5.0}}};
  for (DType dt : {kFloat32, kFloat64}) {
    // libdevice's and glibc's expf / erff / tanhf / log1pf differ by an ulp or two
    const double tol = dt == kFloat32 ? 1e-5 : 1e-12;
    for (const Layout& l : layouts(dt)) {
      const Tensor x = l.view(l.base), xg = l.view(l.base.to(gpu));
      Generator gen(36);
      const Tensor grad = randn(x.shape(), {.dtype = dt}, gen);
      for (const auto& [act, p] : acts) {
        INFO(l.name << " " << dt << " activation " << int(act) << " slope " << p.negative_slope << " beta " << p.beta);
        const Tensor want = raw::input_activation(act, x, p);
        const Tensor got = raw::input_activation(act, xg, p);
        REQUIRE(got.device() == gpu);
        REQUIRE(max_err(got, want) <= tol);
        const Tensor gwant = raw::input_activation_backward(act, grad, x, p);
        const Tensor ggot = raw::input_activation_backward(act, grad.to(gpu), xg, p);
        REQUIRE(max_err(ggot, gwant) <= tol);
      }
    }
  }
  // Forward and backward on the GPU through the tape, against finite differences.
  auto on_gpu = [gpu](std::function<Tensor(const Tensor&)> f) {
    return [f, gpu](const V& v) { return f(v[0].to(gpu)).to(kCPU); };
  };
  Tensor a = leaf({3, 4}, 37);
  REQUIRE_GRADCHECK(on_gpu([](const Tensor& x) { return gelu(x); }), {a});
  REQUIRE_GRADCHECK(on_gpu([](const Tensor& x) { return gelu(x.t(), "tanh"); }), {a});
  REQUIRE_GRADCHECK(on_gpu([](const Tensor& x) { return silu(x); }), {a});
  REQUIRE_GRADCHECK(on_gpu([](const Tensor& x) { return leaky_relu(x, 0.2); }), {a});
  REQUIRE_GRADCHECK(on_gpu([](const Tensor& x) { return softplus(x, 2.0, 1.0); }), {a});
}
