// Convolution, pooling and dropout: hand-computed golden values, a direct-loop reference
// conv on many configurations, finite-difference gradchecks, and error messages.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "weft.h"

using namespace weft;
using Catch::Contains;

namespace {

Tensor make(const std::vector<double>& v, const Shape& s, DType dt = kFloat32) {
  return tensor(v, s, {.dtype = dt});
}

std::vector<double> iota(int64_t n, double start = 1) {
  std::vector<double> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

void check_values(const Tensor& t, const std::vector<double>& expect, double tol = 1e-6) {
  const std::vector<double> got = t.to_vector<double>();
  REQUIRE(got.size() == expect.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    CHECK(got[i] == Approx(expect[i]).margin(tol));
  }
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// The convolution by its definition, in double: out, and the input and weight
// gradients for an output gradient gout, from one loop over every (output, tap) pair.
struct Reference {
  std::vector<double> out, gx, gw;
};
Reference reference_conv(const std::vector<double>& x, const Shape& xs, const std::vector<double>& w,
                         const Shape& ws, const std::vector<double>& b, const std::vector<double>& gout,
                         const Conv2dParams& p) {
  const int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3], K = ws[0], Cg = ws[1], kh = ws[2], kw = ws[3];
  const int64_t Ho = (H + 2 * p.padding[0] - p.dilation[0] * (kh - 1) - 1) / p.stride[0] + 1;
  const int64_t Wo = (W + 2 * p.padding[1] - p.dilation[1] * (kw - 1) - 1) / p.stride[1] + 1;
  const int64_t Kg = K / p.groups;
  Reference r{std::vector<double>(N * K * Ho * Wo), std::vector<double>(x.size()), std::vector<double>(w.size())};
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          const int64_t o = ((n * K + k) * Ho + oh) * Wo + ow;
          r.out[o] = b.empty() ? 0.0 : b[k];
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t ih = oh * p.stride[0] - p.padding[0] + i * p.dilation[0];
                const int64_t iw = ow * p.stride[1] - p.padding[1] + j * p.dilation[1];
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const int64_t xi = ((n * C + (k / Kg) * Cg + c) * H + ih) * W + iw;
                const int64_t wi = ((k * Cg + c) * kh + i) * kw + j;
                r.out[o] += x[xi] * w[wi];
                r.gx[xi] += gout[o] * w[wi];
                r.gw[wi] += gout[o] * x[xi];
              }
        }
  return r;
}

// A float64 leaf of distinct values (no ties for max pooling's finite differences).
Tensor distinct_leaf(const Shape& s) {
  Tensor perm = raw::to_dtype(randperm(s.numel()), kFloat64);
  Tensor x = make(perm.to_vector<double>(), s, kFloat64);
  raw::binary_scalar_(raw::Binary::Mul, x, 0.1);
  return x.requires_grad_(true);
}

Tensor leaf(const Shape& s) { return randn(s, {.dtype = kFloat64, .requires_grad = true}); }

// Equal bit for bit (so -0 differs from +0, and NaN equals a NaN of the same payload).
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor ac = a.contiguous(), bc = b.contiguous();
  return std::memcmp(ac.raw_data(), bc.raw_data(), static_cast<size_t>(a.numel()) * element_size(a.dtype())) == 0;
}

}  // namespace

// ---- golden values ---------------------------------------------------------------------

TEST_CASE("conv2d: golden values for small hand-computed cases", "[conv]") {
  SECTION("3x3 input, 2x2 kernel, bias") {
    Tensor out = raw::conv2d(make(iota(9), {1, 1, 3, 3}), make({1, 2, 3, 4}, {1, 1, 2, 2}), make({1}, {1}), {});
    REQUIRE(out.shape() == Shape{1, 1, 2, 2});
    check_values(out, {38, 48, 68, 78});
  }
  SECTION("padding 1, stride 2, 3x3 ones kernel") {
    Tensor out = raw::conv2d(make(iota(16), {1, 1, 4, 4}), make(std::vector<double>(9, 1.0), {1, 1, 3, 3}), {},
                             {.stride = {2, 2}, .padding = {1, 1}});
    REQUIRE(out.shape() == Shape{1, 1, 2, 2});
    check_values(out, {14, 30, 57, 99});
  }
  SECTION("dilation 2 on a 2x2 kernel") {
    Tensor out = raw::conv2d(make(iota(16), {1, 1, 4, 4}), make({1, 1, 1, 1}, {1, 1, 2, 2}), {}, {.dilation = {2, 2}});
    check_values(out, {24, 28, 40, 44});
  }
  SECTION("groups 2: output channels 0,1 see input channel 0; 2,3 see channel 1") {
    Tensor out = raw::conv2d(make(iota(8), {1, 2, 2, 2}), make({1, 2, 3, 4}, {4, 1, 1, 1}), {}, {.groups = 2});
    check_values(out, {1, 2, 3, 4, 2, 4, 6, 8, 15, 18, 21, 24, 20, 24, 28, 32});
  }
  SECTION("1x1 pointwise conv mixing channels") {
    Tensor out = raw::conv2d(make(iota(8), {1, 2, 2, 2}, kFloat64), make({1, -1}, {1, 2, 1, 1}, kFloat64), {}, {});
    check_values(out, {-4, -4, -4, -4});
  }
}

// ---- against the direct-loop reference --------------------------------------------------

TEST_CASE("conv2d: forward and both backwards match a direct-loop reference", "[conv]") {
  const int64_t N = 5, C = 4, H = 7, W = 6, K = 8;
  const std::vector<std::array<int64_t, 2>> kernels{{3, 3}, {1, 1}, {1, 3}, {2, 3}};
  for (DType dt : {kFloat32, kFloat64})
    for (auto [kh, kw] : kernels)
      for (int64_t stride : {1, 2})
        for (int64_t pad : {0, 1, 2})
          for (int64_t dil : {1, 2})
            for (int64_t groups : {1, 2, 4})
              for (bool with_bias : {false, true}) {
                const Conv2dParams p{{stride, stride}, {pad, pad}, {dil, dil}, groups};
                INFO("dtype " << dtype_name(dt) << " kernel " << kh << "x" << kw << " stride " << stride << " pad "
                              << pad << " dil " << dil << " groups " << groups << " bias " << with_bias);
                // Non-contiguous views: x stored NHWC, w with its kernel axes swapped.
                Tensor x = raw::to_dtype(randn({N, H, W, C}), dt).permute({0, 3, 1, 2});
                Tensor w = raw::to_dtype(randn({K, C / groups, kw, kh}), dt).transpose(2, 3);
                Tensor b = with_bias ? raw::to_dtype(randn({K}), dt) : Tensor();
                REQUIRE(!x.is_contiguous());
                Tensor out = raw::conv2d(x, w, b, p);
                Tensor gout = raw::to_dtype(randn(out.shape()), dt);
                const Reference r = reference_conv(x.to_vector<double>(), x.shape(), w.to_vector<double>(), w.shape(),
                                                   with_bias ? b.to_vector<double>() : std::vector<double>{},
                                                   gout.to_vector<double>(), p);
                const double tol = dt == kFloat32 ? 1e-4 : 1e-10;
                CHECK(max_abs_diff(out.to_vector<double>(), r.out) < tol);
                Tensor gx = raw::conv2d_backward_input(gout.permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2}), w,
                                                       x.shape(), p);
                CHECK(gx.shape() == x.shape());
                CHECK(max_abs_diff(gx.to_vector<double>(), r.gx) < tol);
                Tensor gw = raw::conv2d_backward_weight(gout, x, w.shape(), p);
                CHECK(gw.shape() == w.shape());
                CHECK(max_abs_diff(gw.to_vector<double>(), r.gw) < tol);
              }
}

// 3x3, stride 1, undilated, ungrouped, with 8 or more channels in and out: the
// convolution and both its gradients run through Winograd's F(2x2, 3x3)
// (tensor/cpu/winograd.h). Odd and even sizes (a last tile half outside the output),
// every padding up to 3 (3 sends the input gradient back to im2col), tiny images, and
// rows of more than 8 tiles (the float32 transforms work 8 tiles at a time).
TEST_CASE("conv2d: the Winograd F(2x2,3x3) path matches the direct-loop reference", "[conv]") {
  struct Case {
    int64_t N, C, K, H, W;
  };
  for (DType dt : {kFloat32, kFloat64})
    for (const Case& c :
         {Case{3, 8, 8, 7, 6}, Case{2, 9, 12, 14, 14}, Case{5, 16, 8, 5, 9}, Case{1, 8, 9, 2, 3}, Case{2, 8, 8, 4, 37}})
      for (int64_t ph : {0, 1, 2, 3})
        for (int64_t pw : {0, 1, 2})
          for (bool with_bias : {false, true}) {
            const Conv2dParams p{.padding = {ph, pw}};
            if (c.H + 2 * ph < 3 || c.W + 2 * pw < 3) continue;  // no output
            INFO("dtype " << dtype_name(dt) << " N,C,K,H,W " << c.N << "," << c.C << "," << c.K << "," << c.H << ","
                          << c.W << " padding " << ph << "," << pw << " bias " << with_bias);
            Tensor x = raw::to_dtype(randn({c.N, c.C, c.H, c.W}), dt);
            Tensor w = raw::to_dtype(randn({c.K, c.C, 3, 3}), dt);
            Tensor b = with_bias ? raw::to_dtype(randn({c.K}), dt) : Tensor();
            Tensor out = raw::conv2d(x, w, b, p);
            Tensor gout = raw::to_dtype(randn(out.shape()), dt);
            const Reference r = reference_conv(x.to_vector<double>(), x.shape(), w.to_vector<double>(), w.shape(),
                                               with_bias ? b.to_vector<double>() : std::vector<double>{},
                                               gout.to_vector<double>(), p);
            // The sums run over 9 C terms of unit variance; float32 Winograd adds a few ulps.
            const double tol = dt == kFloat32 ? 2e-4 * std::sqrt(9.0 * double(std::max(c.C, c.K))) : 1e-10;
            CHECK(max_abs_diff(out.to_vector<double>(), r.out) < tol);
            Tensor gx = raw::conv2d_backward_input(gout, w, x.shape(), p);
            CHECK(max_abs_diff(gx.to_vector<double>(), r.gx) < tol);
            // The weight gradient sums over N * Ho * Wo positions, not 9 C.
            const double wtol = dt == kFloat32 ? 2e-4 * std::sqrt(double(c.N * c.H * c.W) + 9.0) : 1e-10;
            Tensor gw = raw::conv2d_backward_weight(gout, x, w.shape(), p);
            CHECK(max_abs_diff(gw.to_vector<double>(), r.gw) < wtol);
          }
}

// Images smaller than the kernel's reach: some taps of the stride-1 same-width im2col
// shortcut (conv.cpp) see no valid output row at all.
TEST_CASE("conv2d: one-row and one-column images match the reference", "[conv]") {
  struct Case {
    Shape xs, ws;
    Conv2dParams p;
  };
  for (const Case& c : {Case{{2, 3, 1, 5}, {4, 3, 3, 3}, {.padding = {1, 1}}},
                        Case{{2, 3, 2, 4}, {4, 3, 5, 5}, {.padding = {2, 2}}},
                        Case{{1, 2, 3, 1}, {3, 2, 1, 5}, {.padding = {0, 2}}},
                        Case{{2, 8, 1, 1}, {8, 8, 3, 3}, {.padding = {1, 1}}}}) {
    INFO("input " << c.xs << " weight " << c.ws);
    Tensor x = randn(c.xs), w = randn(c.ws), b = randn({c.ws[0]});
    Tensor out = raw::conv2d(x, w, b, c.p);
    Tensor gout = randn(out.shape());
    const Reference r = reference_conv(x.to_vector<double>(), x.shape(), w.to_vector<double>(), w.shape(),
                                       b.to_vector<double>(), gout.to_vector<double>(), c.p);
    CHECK(max_abs_diff(out.to_vector<double>(), r.out) < 1e-4);
    CHECK(max_abs_diff(raw::conv2d_backward_input(gout, w, x.shape(), c.p).to_vector<double>(), r.gx) < 1e-4);
    CHECK(max_abs_diff(raw::conv2d_backward_weight(gout, x, w.shape(), c.p).to_vector<double>(), r.gw) < 1e-4);
  }
}

TEST_CASE("conv2d: the weight gradient is bitwise reproducible", "[conv]") {
  Tensor x = randn({13, 3, 9, 9}), gout = randn({13, 6, 7, 7});
  Tensor a = raw::conv2d_backward_weight(gout, x, {6, 3, 3, 3}, {});
  Tensor b = raw::conv2d_backward_weight(gout, x, {6, 3, 3, 3}, {});
  CHECK(equal(a, b));
}

// ---- gradchecks ------------------------------------------------------------------------

TEST_CASE("conv2d: gradcheck over stride, padding, dilation and groups", "[conv]") {
  struct Case {
    Shape xs, ws;
    Conv2dParams p;
    bool bias;
  };
  const std::vector<Case> cases{
      {{2, 3, 5, 5}, {4, 3, 3, 3}, {.stride = {2, 2}, .padding = {1, 1}}, true},
      {{1, 4, 6, 5}, {2, 2, 2, 3}, {.padding = {2, 1}, .dilation = {2, 1}, .groups = 2}, true},
      {{2, 4, 3, 3}, {4, 1, 1, 1}, {.groups = 4}, false},
      {{1, 2, 6, 6}, {3, 2, 3, 2}, {.stride = {1, 2}, .dilation = {2, 2}}, false},
  };
  for (const Case& c : cases) {
    INFO("input " << c.xs << " weight " << c.ws);
    Tensor x = leaf(c.xs), w = leaf(c.ws), b = c.bias ? leaf({c.ws[0]}) : Tensor();
    auto f = [&](const std::vector<Tensor>& in) { return weft::conv2d(in[0], in[1], c.bias ? in[2] : Tensor(), c.p); };
    const auto res = autograd::gradcheck(f, c.bias ? std::vector<Tensor>{x, w, b} : std::vector<Tensor>{x, w});
    INFO(res.report);
    CHECK(res.ok);
  }
}

TEST_CASE("conv2d: gradcheck through the Winograd path", "[conv]") {
  for (int64_t pad : {0, 1, 2}) {
    INFO("padding " << pad);
    Tensor x = leaf({2, 8, 5, 4}), w = leaf({8, 8, 3, 3}), b = leaf({8});
    auto f = [&](const std::vector<Tensor>& in) { return weft::conv2d(in[0], in[1], in[2], {.padding = {pad, pad}}); };
    const auto res = autograd::gradcheck(f, {x, w, b});
    INFO(res.report);
    CHECK(res.ok);
  }
}

TEST_CASE("conv2d: gradcheck through a non-contiguous input view", "[conv]") {
  Tensor x_nhwc = leaf({2, 5, 5, 2}), w = leaf({3, 2, 3, 3}), b = leaf({3});
  auto f = [](const std::vector<Tensor>& in) {
    return weft::conv2d(in[0].permute({0, 3, 1, 2}), in[1], in[2], {.padding = {1, 1}});
  };
  const auto res = autograd::gradcheck(f, {x_nhwc, w, b});
  INFO(res.report);
  CHECK(res.ok);
}

TEST_CASE("conv2d: records nothing when no input requires grad; bias gradient is optional", "[conv]") {
  const int64_t before = autograd::tape_size();
  Tensor out = weft::conv2d(randn({1, 2, 4, 4}), randn({3, 2, 3, 3}));
  CHECK(!out.requires_grad());
  CHECK(autograd::tape_size() == before);

  Tensor x = randn({1, 2, 4, 4}, {.requires_grad = true}), w = randn({3, 2, 3, 3});
  Tensor y = weft::conv2d(x, w);
  y.backward(ones_like(y));
  REQUIRE(x.grad().defined());
  CHECK(x.grad().shape() == x.shape());
  CHECK(!w.grad().defined());
}

// conv2d_backward_weight can hand back the bias gradient too (summed in the same pass on
// the im2col path; a separate reduction on the Winograd path): either way it must equal
// grad summed over N, Ho, Wo. And through autograd, the bias alone (weight frozen) still
// gets its gradient.
TEST_CASE("conv2d: the bias gradient from the weight-gradient pass equals the plain sum", "[conv]") {
  struct Case {
    Shape xs, ws;
    Conv2dParams p;
  };
  for (const Case& c : {Case{{5, 1, 9, 7}, {4, 1, 3, 3}, {.padding = {1, 1}}},       // im2col, one input channel
                        Case{{3, 4, 6, 5}, {6, 2, 3, 3}, {.stride = {2, 1}, .groups = 2}},  // im2col, groups
                        Case{{2, 8, 6, 6}, {8, 8, 3, 3}, {.padding = {1, 1}}}}) {          // Winograd
    INFO("input " << c.xs << " weight " << c.ws);
    Tensor x = randn(c.xs), w = randn(c.ws);
    Tensor out = raw::conv2d(x, w, Tensor(), c.p);
    Tensor grad = randn(out.shape());
    Tensor gb;
    Tensor gw = raw::conv2d_backward_weight(grad, x, c.ws, c.p, &gb);
    REQUIRE(gb.shape() == Shape{c.ws[0]});
    CHECK(allclose(gb, raw::reduce(raw::Reduce::Sum, grad, {0, 2, 3}, false), 1e-5, 1e-5));
    CHECK(allclose(gw, raw::conv2d_backward_weight(grad, x, c.ws, c.p), 0, 0));  // the weight part unchanged
  }
  Tensor x = randn({2, 1, 5, 5}), w = randn({3, 1, 3, 3}), b = randn({3}, {.requires_grad = true});
  Tensor y = weft::conv2d(x, w, b, {.padding = {1, 1}});
  Tensor g = randn(y.shape());
  y.backward(g);
  REQUIRE(b.grad().defined());
  CHECK(allclose(b.grad(), raw::reduce(raw::Reduce::Sum, g, {0, 2, 3}, false), 1e-5, 1e-5));
}

TEST_CASE("max_pool2d and avg_pool2d: gradcheck", "[pool]") {
  const std::vector<Pool2dParams> max_cases{
      {.kernel = {2, 2}, .stride = {2, 2}},
      {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}},
      {.kernel = {3, 2}, .stride = {1, 1}, .padding = {1, 1}, .dilation = {2, 1}},
  };
  for (const auto& p : max_cases) {
    Tensor x = distinct_leaf({2, 3, 6, 5});
    const auto res = autograd::gradcheck([&](const std::vector<Tensor>& in) { return weft::max_pool2d(in[0], p); }, {x});
    INFO(res.report);
    CHECK(res.ok);
  }
  for (bool include_pad : {true, false}) {
    for (const Pool2dParams& p : {Pool2dParams{.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}},
                                  Pool2dParams{.kernel = {2, 3}, .stride = {1, 2}, .padding = {1, 0}}}) {
      Pool2dParams q = p;
      q.count_include_pad = include_pad;
      Tensor x = leaf({2, 2, 5, 6});
      const auto res = autograd::gradcheck([&](const std::vector<Tensor>& in) { return weft::avg_pool2d(in[0], q); }, {x});
      INFO(res.report);
      CHECK(res.ok);
    }
  }
}

// ---- pooling golden values -----------------------------------------------------------

TEST_CASE("max_pool2d: golden values, argmax, and -inf padding", "[pool]") {
  Tensor x = make(iota(16), {1, 1, 4, 4});
  check_values(raw::max_pool2d(x, {}), {6, 8, 14, 16});
  CHECK(raw::max_pool2d_indices(x, {}).to_vector<int64_t>() == std::vector<int64_t>{5, 7, 13, 15});
  // Backward of the 2x2 fast path: each window's gradient lands on its max, zeros elsewhere.
  check_values(raw::max_pool2d_backward(make({1, 2, 3, 4}, {1, 1, 2, 2}), x, {}),
               {0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4});

  // All-negative input: a zero-valued padding would win; -inf padding never does.
  std::vector<double> neg = iota(16);
  for (double& v : neg) v = -v;
  const Pool2dParams padded{.padding = {1, 1}};
  Tensor pout = raw::max_pool2d(make(neg, {1, 1, 4, 4}), padded);
  REQUIRE(pout.shape() == Shape{1, 1, 3, 3});
  check_values(pout, {-1, -2, -4, -5, -6, -8, -13, -14, -16});
  CHECK(raw::max_pool2d_indices(make(neg, {1, 1, 4, 4}), padded).to_vector<int64_t>() ==
        std::vector<int64_t>{0, 1, 3, 4, 5, 7, 12, 13, 15});

  Tensor gx = raw::max_pool2d_backward(make(iota(9), {1, 1, 3, 3}), make(neg, {1, 1, 4, 4}), padded);
  check_values(gx, {1, 2, 0, 3, 4, 5, 0, 6, 0, 0, 0, 0, 7, 8, 0, 9});

  // A window of real -inf values still credits a real pixel; a NaN wins its window.
  const double inf = std::numeric_limits<double>::infinity();
  Tensor ix = make({-inf, -inf, -inf, -inf, 1, std::nan(""), 3, 4}, {1, 2, 2, 2});
  const std::vector<double> iv = raw::max_pool2d(ix, {}).to_vector<double>();
  CHECK(iv[0] == -inf);
  CHECK(std::isnan(iv[1]));
  CHECK(raw::max_pool2d_indices(ix, {}).to_vector<int64_t>() == std::vector<int64_t>{0, 1});
  check_values(raw::max_pool2d_backward(make({1, 2}, {1, 2, 1, 1}), ix, {}), {1, 0, 0, 0, 0, 2, 0, 0});

  // Odd sizes: the last row and column belong to no 2x2 window and get zero gradient, and
  // the fast path agrees with the general one (a 2x2 window written with dilation-free
  // padding 0 but stride 1 takes the general path).
  Tensor odd = randn({2, 3, 5, 7});
  Tensor g = randn({2, 3, 2, 3});
  Tensor gfast = raw::max_pool2d_backward(g, odd, {});
  const std::vector<float> gv = gfast.to_vector<float>();
  const std::vector<int64_t> at = raw::max_pool2d_indices(odd, {}).to_vector<int64_t>();
  std::vector<float> expect(gv.size(), 0.0f);
  const std::vector<float> gg = g.to_vector<float>();
  for (size_t k = 0; k < at.size(); ++k) expect[(k / 6) * 35 + at[k]] += gg[k];
  CHECK(gv == expect);
}

// The 2x2 fast path reads whole vectors past the end of a row where that stays inside
// the plane, and masks only near the plane's end. Widths on both sides of the 16-window
// groups (Wo from 1 to 33), odd and even, and several planes: a window that took lanes
// from the next row or plane, or an output left unwritten, would not match the general
// path's argmax. (Reads past the tensor itself are the sanitizer build's to catch.)
TEST_CASE("max_pool2d: the 2x2 fast path matches the general argmax at every width", "[pool]") {
  for (int64_t H : {2, 3, 5, 28}) {
    for (int64_t W : {2, 3, 4, 7, 14, 15, 28, 29, 31, 32, 33, 34, 62, 63, 64, 66, 67}) {
      INFO("H=" << H << " W=" << W);
      Tensor x = randn({2, 3, H, W});
      Tensor out = raw::max_pool2d(x, {});
      const int64_t Ho = H / 2, Wo = W / 2;
      REQUIRE(out.shape() == Shape{2, 3, Ho, Wo});
      const std::vector<int64_t> at = raw::max_pool2d_indices(x, {}).to_vector<int64_t>();
      const std::vector<float> xv = x.to_vector<float>(), ov = out.to_vector<float>();
      Tensor g = randn({2, 3, Ho, Wo});
      const std::vector<float> gg = g.to_vector<float>();
      std::vector<float> expect_out(ov.size()), expect_gx(xv.size(), 0.0f);
      for (size_t k = 0; k < at.size(); ++k) {
        const size_t plane = k / static_cast<size_t>(Ho * Wo) * static_cast<size_t>(H * W);
        expect_out[k] = xv[plane + at[k]];
        expect_gx[plane + at[k]] += gg[k];
      }
      CHECK(ov == expect_out);
      CHECK(raw::max_pool2d_backward(g, x, {}).to_vector<float>() == expect_gx);
    }
  }
}

// relu_max_pool2d must be exactly max_pool2d(relu(x)), forward and backward, bit for bit:
// on the 2x2 fast path (float32 vectors, float64 plain loops) at widths around the
// vector groups, on the general path, and with the awkward values -- all-negative
// windows (output 0, no gradient), zeros tied with negatives, ties among positives, NaN
// (weft's relu maps it to 0).
TEST_CASE("relu_max_pool2d: the same values and gradients as max_pool2d after relu", "[pool]") {
  const double nan = std::nan("");
  const std::vector<Pool2dParams> params{
      {}, {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}}, {.kernel = {2, 3}, .stride = {1, 2}, .dilation = {2, 1}}};
  for (DType dt : {kFloat32, kFloat64})
    for (const Pool2dParams& p : params)
      for (auto [H, W] : std::vector<std::pair<int64_t, int64_t>>{{6, 2}, {6, 5}, {7, 14}, {6, 28}, {7, 33},
                                                                   {6, 34}, {7, 66}}) {
        if (p.kernel[1] > W) continue;  // no output
        INFO(dtype_name(dt) << " kernel " << p.kernel[0] << "x" << p.kernel[1] << " H=" << H << " W=" << W);
        const Shape xs{2, 3, H, W};
        std::vector<double> v = randn(xs).to_vector<double>();
        for (size_t i = 0; i < v.size(); ++i) {  // sprinkle the awkward values
          if (i % 11 == 3) v[i] = 0.0;
          if (i % 19 == 2) v[i] = -0.0;
          if (i % 17 == 5) v[i] = nan;
          if (i % 13 == 7 && i > 0) v[i] = v[i - 1];
          if ((i / static_cast<size_t>(W)) % 4 == 1) v[i] = -std::abs(v[i]);  // some all-negative rows
        }
        Tensor x = make(v, xs, dt);
        Tensor r = raw::unary(raw::Unary::Relu, x);
        Tensor want = raw::max_pool2d(r, p);
        Tensor got = raw::relu_max_pool2d(x, p);
        REQUIRE(got.shape() == want.shape());
        CHECK(same_bits(got, want));
        Tensor g = make(randn(want.shape()).to_vector<double>(), want.shape(), dt);
        Tensor want_gx = raw::relu_backward(raw::max_pool2d_backward(g, r, p), r);
        CHECK(same_bits(raw::relu_max_pool2d_backward(g, x, p), want_gx));
      }
}

TEST_CASE("relu_max_pool2d: gradcheck and bad input", "[pool]") {
  for (const Pool2dParams& p : {Pool2dParams{}, Pool2dParams{.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}}}) {
    // Distinct values, half of them negative, none within 0.05 of relu's kink.
    Tensor x = distinct_leaf({2, 3, 6, 5});
    {
      autograd::NoGradGuard no_grad;
      x.add_(-(0.1 * 90 - 0.05));
    }
    const auto res =
        autograd::gradcheck([&](const std::vector<Tensor>& in) { return weft::relu_max_pool2d(in[0], p); }, {x});
    INFO(res.report);
    CHECK(res.ok);
  }
  CHECK_THROWS_WITH(raw::relu_max_pool2d(randn({3, 4, 4}), {}), Catch::Contains("relu_max_pool2d") &&
                                                                   Catch::Contains("(3,4,4)"));
}

TEST_CASE("avg_pool2d: golden values with count_include_pad both ways", "[pool]") {
  check_values(raw::avg_pool2d(make(iota(16), {1, 1, 4, 4}), {}), {3.5, 5.5, 11.5, 13.5});
  Pool2dParams p{.kernel = {2, 2}, .stride = {2, 2}, .padding = {1, 1}};
  check_values(raw::avg_pool2d(make(iota(16), {1, 1, 4, 4}), p), {0.25, 1.25, 1, 3.5, 8.5, 5, 3.25, 7.25, 4});
  p.count_include_pad = false;
  check_values(raw::avg_pool2d(make(iota(16), {1, 1, 4, 4}), p), {1, 2.5, 4, 7, 8.5, 10, 13, 14.5, 16});
  // Backward of the last: each input pixel gets its window's gradient / real-pixel count.
  Tensor gx = raw::avg_pool2d_backward(make(std::vector<double>(9, 1.0), {1, 1, 3, 3}), {1, 1, 4, 4}, p);
  check_values(gx, {1, 0.5, 0.5, 1, 0.5, 0.25, 0.25, 0.5, 0.5, 0.25, 0.25, 0.5, 1, 0.5, 0.5, 1});
}

// ---- errors ----------------------------------------------------------------------------

TEST_CASE("conv2d: every bad input names the op and the shapes", "[conv]") {
  Tensor x = randn({2, 3, 8, 8}), w = randn({4, 2, 3, 3});
  REQUIRE_THROWS_WITH(raw::conv2d(x, w, {}, {}),
                      Contains("conv2d: input (2,3,8,8) has 3 channels, weight (4,2,3,3) with groups 1 expects 2"));
  Tensor x2 = randn({2, 2, 8, 8});
  REQUIRE_THROWS_WITH(raw::conv2d(randn({2, 8, 8}), w, {}, {}), Contains("conv2d") && Contains("(2,8,8)"));
  REQUIRE_THROWS_WITH(raw::conv2d(x2, randn({4, 2, 3}), {}, {}), Contains("conv2d") && Contains("(4,2,3)"));
  REQUIRE_THROWS_WITH(raw::conv2d(randn({2, 2, 8, 8}), randn({5, 1, 3, 3}), {}, {.groups = 2}),
                      Contains("conv2d") && Contains("(5,1,3,3)") && Contains("groups 2"));
  REQUIRE_THROWS_WITH(raw::conv2d(x2, w, randn({3}), {}), Contains("conv2d") && Contains("bias (3)") &&
                                                              Contains("(4,2,3,3)"));
  REQUIRE_THROWS_WITH(raw::conv2d(x2, raw::to_dtype(w, kFloat64), {}, {}),
                      Contains("conv2d") && Contains("(4,2,3,3)") && Contains("float64"));
  REQUIRE_THROWS_WITH(raw::conv2d(x2, w, {}, {.stride = {0, 1}}), Contains("conv2d") && Contains("(4,2,3,3)") &&
                                                                      Contains("stride"));
  REQUIRE_THROWS_WITH(raw::conv2d(x2, w, {}, {.dilation = {1, 0}}), Contains("conv2d") && Contains("dilation"));
  REQUIRE_THROWS_WITH(raw::conv2d(x2, w, {}, {.padding = {-1, 0}}), Contains("conv2d") && Contains("padding"));
  REQUIRE_THROWS_WITH(raw::conv2d(x2, w, {}, {.groups = 0}), Contains("conv2d") && Contains("groups"));
  REQUIRE_THROWS_WITH(raw::conv2d(randn({1, 1, 3, 3}), randn({1, 1, 5, 5}), {}, {}),
                      Contains("conv2d") && Contains("(1,1,3,3)") && Contains("output size (-1,-1)"));
  REQUIRE_THROWS_WITH(raw::conv2d(randn({1, 1, 3, 3}), randn({1, 1, 3, 3}), {}, {.stride = {2, 2}, .dilation = {2, 2}}),
                      Contains("output size (0,0)"));
  REQUIRE_THROWS_WITH(raw::conv2d_backward_input(randn({2, 4, 5, 5}), w, {2, 2, 8, 8}, {}),
                      Contains("conv2d_backward_input") && Contains("(2,4,5,5)") && Contains("(2,4,6,6)"));
  REQUIRE_THROWS_WITH(raw::conv2d_backward_weight(randn({2, 4, 6, 6}), x, {4, 2, 3, 3}, {}),
                      Contains("conv2d_backward_weight") && Contains("(2,3,8,8)"));
}

TEST_CASE("pooling: every bad input names the op and the shapes", "[pool]") {
  Tensor x = randn({1, 2, 4, 4});
  REQUIRE_THROWS_WITH(raw::max_pool2d(randn({2, 4, 4}), {}), Contains("max_pool2d") && Contains("(2,4,4)"));
  REQUIRE_THROWS_WITH(raw::max_pool2d(x, {.kernel = {0, 2}}), Contains("max_pool2d") && Contains("kernel"));
  REQUIRE_THROWS_WITH(raw::avg_pool2d(x, {.stride = {2, 0}}), Contains("avg_pool2d") && Contains("stride"));
  REQUIRE_THROWS_WITH(raw::max_pool2d(x, {.kernel = {3, 3}, .padding = {2, 2}}),
                      Contains("max_pool2d") && Contains("(1,2,4,4)") && Contains("at most half the kernel"));
  REQUIRE_THROWS_WITH(raw::max_pool2d(x, {.kernel = {5, 5}}),
                      Contains("max_pool2d") && Contains("(1,2,4,4)") && Contains("larger than the padded input 4x4"));
  REQUIRE_THROWS_WITH(raw::max_pool2d(x, {.kernel = {3, 3}, .dilation = {2, 2}}), Contains("spans 5x5"));
  REQUIRE_THROWS_WITH(raw::avg_pool2d(x, {.dilation = {2, 2}}), Contains("avg_pool2d") && Contains("dilation"));
  REQUIRE_THROWS_WITH(raw::max_pool2d_backward(randn({1, 2, 3, 2}), x, {}),
                      Contains("max_pool2d_backward") && Contains("(1,2,3,2)") && Contains("(1,2,2,2)"));
  REQUIRE_THROWS_WITH(raw::avg_pool2d_backward(randn({1, 2, 3, 3}), {1, 2, 4, 4}, {}),
                      Contains("avg_pool2d_backward") && Contains("(1,2,3,3)") && Contains("(1,2,2,2)"));
}

// ---- dropout ---------------------------------------------------------------------------

TEST_CASE("dropout: statistics, eval identity, seeding", "[dropout]") {
  Generator gen(123);
  Tensor x = ones({200000});
  Tensor y = dropout(x, 0.3, true, gen);
  const std::vector<float> v = y.to_vector<float>();
  int64_t dropped = 0, misscaled = 0;
  double sum = 0;
  for (float e : v) {
    dropped += e == 0.0f;
    misscaled += e != 0.0f && std::abs(e - 1 / 0.7) > 1e-5;  // survivors are scaled by 1/(1-p)
    sum += e;
  }
  CHECK(misscaled == 0);
  CHECK(double(dropped) / v.size() == Approx(0.3).margin(0.01));
  CHECK(sum / v.size() == Approx(1.0).margin(0.01));  // the expectation is preserved

  CHECK(dropout(x, 0.3, false, gen).is_same(x));
  CHECK(dropout(x, 0.0, true, gen).is_same(x));

  Generator g1(42), g2(42), g3(43);
  Tensor a = randn({1000});
  CHECK(equal(dropout(a, 0.5, true, g1), dropout(a, 0.5, true, g2)));
  CHECK(!equal(dropout(a, 0.5, true, g1), dropout(a, 0.5, true, g3)));

  const std::vector<float> all = dropout(a, 1.0, true, gen).to_vector<float>();
  CHECK(std::all_of(all.begin(), all.end(), [](float e) { return e == 0.0f; }));

  REQUIRE_THROWS_WITH(dropout(a, 1.5, true, gen), Contains("dropout") && Contains("1.5"));
  REQUIRE_THROWS_WITH(dropout(a, -0.1, true, gen), Contains("dropout") && Contains("(1000)"));
}

TEST_CASE("dropout: backward multiplies by the same mask", "[dropout]") {
  Generator gen(9);
  Tensor x = ones({4, 50}, {.requires_grad = true});
  Tensor y = dropout(x, 0.4, true, gen);
  y.backward(ones_like(y));
  REQUIRE(x.grad().defined());
  CHECK(equal(x.grad(), y.detach()));  // x is all ones, so y is the mask itself

  Tensor z = leaf({3, 4});
  Generator g(5);
  const auto res = autograd::gradcheck(
      [&](const std::vector<Tensor>& in) {
        g.manual_seed(7);  // the same mask on every evaluation
        return dropout(in[0], 0.3, true, g);
      },
      {z});
  INFO(res.report);
  CHECK(res.ok);
}
