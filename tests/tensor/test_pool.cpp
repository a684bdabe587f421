// Max and average pooling, and the fused relu_max_pool2d: golden values, the 2x2 fast
// path against the general one, finite-difference gradchecks, and error messages.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "../helpers.h"
#include "values.h"
#include "weft.h"

using namespace weft;
using namespace weft::test;
using Catch::Contains;

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
// (relu keeps it, so the window is NaN and relu passes its gradient).
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
