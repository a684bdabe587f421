// Convolution and dropout: hand-computed golden values, a direct-loop reference conv on
// many configurations, finite-difference gradchecks, and error messages. Pooling is in
// test_pool.cpp.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "weft.h"
#include "values.h"

using namespace weft;
using Catch::Contains;
using namespace weft::test;

namespace {

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

Tensor leaf(const Shape& s) { return randn(s, {.dtype = kFloat64, .requires_grad = true}); }

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
  const std::vector<Size2> kernels{{3, 3}, {1, 1}, {1, 3}, {2, 3}};
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
