// weft against values PyTorch computed once (tests/golden/make_golden.py wrote the
// .safetensors fixtures beside this file; PyTorch is not needed to run this). The cases
// are the corners where weft once chose differently from PyTorch, and their neighbours:
//   relu(NaN) = NaN with gradient 1, in the plain op and the fused relu_max_pool2d;
//   max pooling's winner: the first of tied numbers, the last NaN of a window;
//   maximum/minimum split a tie's gradient 0.5/0.5, and a NaN sends it to both inputs;
//   max(dim)/min(dim) send it to the one index they pick; max()/amax/amin share it;
//   pow's gradients at base 0 (0, not 0 * -inf = NaN) and at exponent 0;
//   float32 Adam/AdamW steps within 1 ulp of torch.optim's (foreach=False).
// Values are compared bit for bit unless a case says otherwise (NaN matches any NaN);
// each case runs on the CPU and, where one is visible, on a GPU with a small tolerance.
#include <bit>
#include <cmath>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>

#include "../helpers.h"

#ifndef WEFT_GOLDEN_DIR
#error "tests/meson.build defines WEFT_GOLDEN_DIR, the folder holding the fixtures"
#endif

using namespace weft;

namespace {

// A copy of the fixture tensor `name` of `file` (read once per file), on `dev`.
Tensor golden(const std::string& file, const std::string& name, Device dev = kCPU) {
  static std::map<std::string, nn::SafeTensors> loaded;
  auto it = loaded.find(file);
  if (it == loaded.end())
    it = loaded.emplace(file, nn::load_safetensors(std::string(WEFT_GOLDEN_DIR) + "/" + file)).first;
  const Tensor* t = it->second.find(name);
  INFO(file << ": " << name);
  REQUIRE(t != nullptr);
  return dev.is_cpu() ? t->clone() : t->to(dev);
}

// A fresh leaf that requires grad, holding `t`'s values.
Tensor leaf(const Tensor& t) { return t.clone().requires_grad_(true); }

// The upstream gradient the script fed to backward: 1, 2, 3, ... in `like`'s shape.
Tensor upstream(const Tensor& like) {
  return arange(1, double(like.numel()) + 1, 1, like.dtype()).reshape(like.shape()).to(like.device());
}

// How far apart got and want may be. Zeros and infinities must match exactly (the sign
// of a zero too, unless signed_zeros is off); NaN matches any NaN.
struct Tol {
  int64_t ulps = 0;       // units in the last place of the dtype
  double abs = 0;         // or this absolute difference
  bool signed_zeros = true;
};

template <class T>
int64_t ulp_distance(T a, T b) {
  if (a == b) return 0;
  if (std::signbit(a) != std::signbit(b)) return std::numeric_limits<int64_t>::max();
  using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  const int64_t ia = std::bit_cast<I>(std::fabs(a)), ib = std::bit_cast<I>(std::fabs(b));
  return ia > ib ? ia - ib : ib - ia;
}

template <class T>
bool matches(T g, T w, const Tol& tol) {
  if (std::isnan(w) || std::isnan(g)) return std::isnan(w) && std::isnan(g);
  if (std::isinf(w) || w == 0) return g == w && (!tol.signed_zeros || std::signbit(g) == std::signbit(w));
  return ulp_distance(g, w) <= tol.ulps || std::fabs(double(g) - double(w)) <= tol.abs;
}

// Checks got against PyTorch's want element by element; a failure lists the first few
// mismatches with their flat index.
void check_golden(const std::string& what, const Tensor& got_anywhere, const Tensor& want, const Tol& tol = {}) {
  INFO(what);
  REQUIRE(got_anywhere.defined());
  const Tensor got = got_anywhere.to(kCPU);
  REQUIRE(got.shape() == want.shape());
  REQUIRE(got.dtype() == want.dtype());
  std::ostringstream bad;
  int64_t n_bad = 0;
  auto note = [&](int64_t i, auto g, auto w) {
    if (n_bad++ < 6) bad << "  [" << i << "] weft " << g << ", PyTorch " << w << "\n";
  };
  if (want.dtype() == kInt64) {
    const auto g = got.to_vector<int64_t>(), w = want.to_vector<int64_t>();
    for (size_t i = 0; i < g.size(); ++i)
      if (g[i] != w[i]) note(int64_t(i), g[i], w[i]);
  } else if (want.dtype() == kFloat32) {
    const auto g = got.to_vector<float>(), w = want.to_vector<float>();
    for (size_t i = 0; i < g.size(); ++i)
      if (!matches(g[i], w[i], tol)) note(int64_t(i), g[i], w[i]);
  } else {
    const auto g = got.to_vector<double>(), w = want.to_vector<double>();
    for (size_t i = 0; i < g.size(); ++i)
      if (!matches(g[i], w[i], tol)) note(int64_t(i), g[i], w[i]);
  }
  INFO(n_bad << " of " << want.numel() << " differ:\n" << bad.str());
  CHECK(n_bad == 0);
}

// The CPU, and a GPU where one is visible.
std::vector<Device> devices() {
  std::vector<Device> d{kCPU};
  if (cuda::is_available()) d.push_back(Device::cuda(0));
  return d;
}

const char* const kTags[] = {"f32", "f64"};

}  // namespace

// ---- relu and max pooling --------------------------------------------------------------------

TEST_CASE("golden: relu of NaN is NaN with gradient 1; -0, inf, denormals as PyTorch", "[golden][relu]") {
  for (Device dev : devices())
    for (std::string tag : kTags) {
      const std::string p = "relu." + tag + ".";
      INFO(dev << " " << tag);
      Tensor x = leaf(golden("relu_pool.safetensors", p + "x", dev));
      Tensor y = x.relu();
      y.backward(upstream(y));
      check_golden(p + "y", y, golden("relu_pool.safetensors", p + "y"));
      check_golden(p + "gx", x.grad(), golden("relu_pool.safetensors", p + "gx"));
    }
}

namespace {
struct PoolCase {
  const char* name;
  Pool2dParams p;
};
const PoolCase kPools[] = {{"k2", {}},
                           {"k3s2p1", {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}}},
                           {"k23s12d21", {.kernel = {2, 3}, .stride = {1, 2}, .dilation = {2, 1}}}};
}  // namespace

// The input holds the window [[nan,.5],[.2,-1]] (PyTorch: NaN, not 0.5), a window
// with two NaNs (PyTorch credits the last), all-negative and all -inf windows, signed
// zeros tied, inf ties, and random values with NaN, +-inf, zeros and ties sprinkled in.
TEST_CASE("golden: max_pool2d and relu_max_pool2d with NaN, inf, ties and signed zeros", "[golden][pool]") {
  const std::string f = "relu_pool.safetensors";
  for (Device dev : devices())
    for (std::string tag : kTags)
      for (const PoolCase& c : kPools) {
        const std::string p = "pool." + tag + "." + c.name + ".";
        INFO(dev << " " << p);
        // Overlapping windows add their gradients: in any order on a GPU (atomics).
        const Tol grad_tol = dev.is_cpu() ? Tol{} : Tol{.ulps = 4, .abs = 1e-6};
        const Tensor x = golden(f, "pool." + tag + ".x", dev), g = golden(f, p + "g", dev);
        {
          Tensor xl = leaf(x);
          Tensor y = max_pool2d(xl, c.p);
          y.backward(g);
          check_golden(p + "max.y", y, golden(f, p + "max.y"));
          check_golden(p + "max.gx", xl.grad(), golden(f, p + "max.gx"), grad_tol);
          check_golden(p + "idx", raw::max_pool2d_indices(x, c.p), golden(f, p + "idx"));
        }
        for (bool fused : {true, false}) {
          INFO((fused ? "relu_max_pool2d" : "max_pool2d(relu(x))"));
          Tensor xl = leaf(x);
          Tensor y = fused ? relu_max_pool2d(xl, c.p) : max_pool2d(xl.relu(), c.p);
          y.backward(g);
          check_golden(p + "relu_max.y", y, golden(f, p + "relu_max.y"));
          check_golden(p + "relu_max.gx", xl.grad(), golden(f, p + "relu_max.gx"), grad_tol);
        }
      }
}

// ---- maximum / minimum, max(dim) / min(dim), max(), amax / amin ------------------------------

// Pairs: ties, NaN on either side and both, +-inf ties, 0 against -0. PyTorch's output for
// 0 against -0 depends on whether its vectorised or scalar loop ran, so the sign of a
// zero output is not compared; the gradients' are.
TEST_CASE("golden: maximum and minimum split a tie's gradient; a NaN sends it to both", "[golden][extremum]") {
  const std::string f = "extremum.safetensors";
  for (Device dev : devices())
    for (std::string tag : kTags)
      for (std::string name : {"maximum", "minimum", "maximum_bcast", "minimum_bcast"}) {
        const std::string p = name + "." + tag + ".";
        INFO(dev << " " << p);
        Tensor a = leaf(golden(f, p + "a", dev)), b = leaf(golden(f, p + "b", dev));
        Tensor y = name.starts_with("maximum") ? maximum(a, b) : minimum(a, b);
        y.backward(upstream(y));
        check_golden(p + "y", y, golden(f, p + "y"), {.signed_zeros = false});
        check_golden(p + "ga", a.grad(), golden(f, p + "ga"));
        check_golden(p + "gb", b.grad(), golden(f, p + "gb"));
      }
}

// Rows: a plain tie, two NaNs, NaN with tied numbers, signed zeros, inf ties, all -inf.
TEST_CASE("golden: max(dim) and min(dim) send the gradient to the index they pick; amax and amin share it",
          "[golden][extremum]") {
  const std::string f = "extremum.safetensors";
  for (Device dev : devices())
    for (std::string tag : kTags)
      for (int64_t dim : {0, 1}) {
        const Tensor x = golden(f, "rows." + tag + ".x", dev);
        for (std::string name : {"max", "min"}) {
          const std::string p = name + std::to_string(dim) + "." + tag + ".";
          INFO(dev << " " << p);
          Tensor xl = leaf(x);
          Tensor y = name == "max" ? xl.max(dim) : xl.min(dim);
          y.backward(upstream(y));
          check_golden(p + "y", y, golden(f, p + "y"));
          check_golden(p + "gx", xl.grad(), golden(f, p + "gx"));
          check_golden(p + "idx", name == "max" ? x.argmax(dim) : x.argmin(dim), golden(f, p + "idx"));
        }
        for (std::string name : {"amax", "amin"}) {
          const std::string p = name + std::to_string(dim) + "." + tag + ".";
          INFO(dev << " " << p);
          Tensor xl = leaf(x);
          Tensor y = name == "amax" ? amax(xl, {dim}) : amin(xl, {dim});
          y.backward(upstream(y));
          check_golden(p + "y", y, golden(f, p + "y"));
          check_golden(p + "gx", xl.grad(), golden(f, p + "gx"));
        }
      }
}

// The whole tensor: max() and min() share the gradient among tied extremes and among
// NaNs (PyTorch's evenly_distribute_backward); amax/amin of a NaN give NaN everywhere.
TEST_CASE("golden: max(), min(), amax(), amin() of a whole tensor, with ties and NaN", "[golden][extremum]") {
  const std::string f = "extremum.safetensors";
  for (Device dev : devices())
    for (std::string tag : kTags)
      for (std::string which : {"clean", "nan"})
        for (std::string name : {"max", "min", "amax", "amin"}) {
          const std::string p = "all_" + which + "_" + name + "." + tag + ".";
          INFO(dev << " " << p);
          Tensor x = leaf(golden(f, "all_" + which + "." + tag + ".x", dev));
          Tensor y = name == "max" ? x.max() : name == "min" ? x.min() : name == "amax" ? amax(x) : amin(x);
          y.backward(full({}, 2.0, {.dtype = x.dtype(), .device = dev}));
          check_golden(p + "y", y, golden(f, p + "y"));
          check_golden(p + "gx", x.grad(), golden(f, p + "gx"));
        }
}

// ---- pow -------------------------------------------------------------------------------------

namespace {
// t with element i (flat) set to v.
Tensor with_element(const Tensor& t, int64_t i, double v) {
  Tensor out = t.clone();
  raw::fill_(out.reshape({-1}).narrow(0, i, 1), v);
  return out;
}
}  // namespace

// Base 0 and -0 under positive, zero, negative, fractional, infinite and NaN exponents;
// NaN and inf bases. The results are exact; a gradient through log (out * log(a)) may
// differ by the last bit between libm's log and PyTorch's vectorised one.
TEST_CASE("golden: pow at base 0, exponent 0, NaN and inf, and both gradients", "[golden][pow]") {
  const std::string f = "pow.safetensors";
  for (Device dev : devices())
    for (std::string tag : kTags) {
      const Tol tol{.ulps = dev.is_cpu() ? 1 : 2};
      {
        const std::string p = "pow." + tag + ".";
        INFO(dev << " " << p);
        Tensor a = leaf(golden(f, p + "a", dev)), b = leaf(golden(f, p + "b", dev));
        Tensor y = weft::pow(a, b);
        y.backward(upstream(y));
        check_golden(p + "y", y, golden(f, p + "y"), tol);
        check_golden(p + "ga", a.grad(), golden(f, p + "ga"), tol);
        check_golden(p + "gb", b.grad(), golden(f, p + "gb"), tol);
      }
      const std::vector<double> exps = golden(f, "pow_scalar." + tag + ".e").to_vector<double>();
      for (size_t k = 0; k < exps.size(); ++k) {
        const std::string p = "pow_scalar." + tag + "." + std::to_string(k) + ".";
        INFO(dev << " " << p << " exponent " << exps[k]);
        Tensor a = leaf(golden(f, "pow_scalar." + tag + ".a", dev));
        Tensor y = weft::pow(a, exps[k]);
        y.backward(upstream(y));
        Tensor want_y = golden(f, p + "y"), want_ga = golden(f, p + "ga");
        if (exps[k] == 0.5) {
          // weft's choice: pow(x, 0.5) is C's pow, so pow(-0, 0.5) = +0 and its gradient
          // 0.5 pow(-0, -0.5) = +inf; PyTorch computes sqrt(x) for exponent 0.5, and
          // sqrt(-0) = -0 (gradient -inf). Element 1 of the bases is -0.
          want_y = with_element(want_y, 1, 0.0);
          want_ga = with_element(want_ga, 1, INFINITY);
        }
        check_golden(p + "y", y, want_y, tol);
        check_golden(p + "ga", a.grad(), want_ga, tol);
      }
    }
}

// ---- Adam / AdamW, float32 -------------------------------------------------------------------

namespace {
// One unit in the last place of |x|, in x's type.
template <class T>
double ulp_of(T x) {
  x = std::fabs(x);
  return double(std::nextafter(x, std::numeric_limits<T>::infinity())) - double(x);
}

// A float32 optimizer step: got and want are after it, prev is PyTorch's value before it.
// Within `ulps` units in the last place of |before| + |after - before|, the scale of the
// sum the step computes (one rounding more or less of that sum -- a multiply-add fused
// on one side and not on the other -- moves the result by up to an ulp of it): where a
// weight crosses zero, or a moment cancels, the result is much smaller than that, and
// counting in its own ulps would make one rounding look like dozens.
void check_step(const std::string& what, const Tensor& got_anywhere, const Tensor& want, const Tensor& prev,
                double ulps) {
  INFO(what);
  const Tensor got = got_anywhere.to(kCPU);
  REQUIRE(got.shape() == want.shape());
  const auto g = got.to_vector<float>(), w = want.to_vector<float>(), p = prev.to_vector<float>();
  std::ostringstream bad;
  int64_t n_bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const float scale = std::fabs(p[i]) + std::fabs(w[i] - p[i]);
    const bool ok = std::isfinite(w[i]) ? std::fabs(double(g[i]) - double(w[i])) <= ulps * ulp_of(scale)
                                        : matches(g[i], w[i], Tol{});
    if (!ok && n_bad++ < 6)
      bad << "  [" << i << "] weft " << g[i] << ", PyTorch " << w[i] << " (" << ulp_distance(g[i], w[i])
          << " ulp), before the step " << p[i] << "\n";
  }
  INFO(n_bad << " of " << w.size() << " differ:\n" << bad.str());
  CHECK(n_bad == 0);
}
}  // namespace

// Six steps on 259 weights (0, -0, 1e-30 and 1e4 among them) with gradients of three
// magnitudes, zeros, tiny and huge ones. Each step starts from PyTorch's weights and
// moments before it (so errors do not compound) and must land within 1 ulp (of
// |before| + |change|, see check_step) of PyTorch's weights and moments. Not bit for
// bit: PyTorch's sqrt(exp_avg_sq) is MKL's vector sqrt, not correctly rounded; its lerp
// and addcmul use fused multiply-adds and its AdamW decay is a separate rounding
// (param.mul_), where the compiler contracts weft's loop into FMAs as it sees fit. The
// scalars (bias corrections, 1 - beta, lr / (1 - beta1^t)) are the same double values
// rounded once. (With 1 - beta2 taken in float32, as before, v and the steps were off
// by about 1e-5 relative, dozens to thousands of these ulps.) On a GPU the step also
// reads lr as a float32 from device memory: 2 ulp there.
TEST_CASE("golden: float32 Adam and AdamW steps match torch.optim within 1 ulp", "[golden][optim]") {
  const std::string f = "adam.safetensors";
  struct Case {
    const char* name;
    optim::AdamOptions o;
    bool decoupled;
  };
  const Case cases[] = {
      {"adamw", {.lr = 1e-3, .weight_decay = 1e-2}, true},
      {"adamw_hot", {.lr = 3e-2, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6, .weight_decay = 0.1}, true},
      {"adam", {.lr = 1e-2}, false},
      {"adam_l2", {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.99, .weight_decay = 0.05}, false},
  };
  for (Device dev : devices())
    for (const Case& c : cases) {
      INFO(dev << " " << c.name);
      const double ulps = dev.is_cpu() ? 1 : 2;
      const std::string p = c.name;
      Tensor w = nn::Parameter(golden(f, "adam.w0", dev));
      optim::Adam opt({w}, c.o, c.decoupled);
      Tensor before_w = golden(f, "adam.w0"), before_m = zeros(w.shape()), before_v = zeros(w.shape());
      for (int s = 1; s <= 6; ++s) {
        const std::string t = std::to_string(s);
        INFO("step " << s);
        w.set_grad(golden(f, "adam.g" + t, dev));
        if (s > 1) {  // start from PyTorch's state
          const std::vector<Tensor> st = opt.state_of(w);
          REQUIRE(st.size() == 2);
          raw::copy_(w, before_w.to(dev));
          raw::copy_(st[0], before_m.to(dev));
          raw::copy_(st[1], before_v.to(dev));
        }
        opt.step();
        const std::vector<Tensor> st = opt.state_of(w);
        REQUIRE(st.size() == 2);
        const Tensor want_w = golden(f, p + ".w" + t), want_m = golden(f, p + ".m" + t);
        const Tensor want_v = golden(f, p + ".v" + t);
        check_step(p + ".w" + t, w, want_w, before_w, ulps);
        check_step(p + ".m" + t, st[0], want_m, before_m, ulps);
        check_step(p + ".v" + t, st[1], want_v, before_v, ulps);
        before_w = want_w, before_m = want_m, before_v = want_v;
      }
    }
}
