// bfloat16 and float16 tensors: conversion, printing, and every op against float32.
//
// The contract (tensor/half.h): an op on 16-bit tensors equals the float32 op on the
// widened inputs, rounded once. So most checks here are exact equalities with that
// reference, which is stronger than "within the type's rounding" and implies it.
#include <cmath>
#include <limits>

#include "../helpers.h"

using namespace weft;

namespace {

// The reference: the float32 op on the inputs widened, rounded to dt, widened again.
std::vector<float> rounded(const Tensor& f32, DType dt) { return f32.to(dt).to(kFloat32).to_vector<float>(); }

Tensor half_randn(const Shape& s, DType dt, uint64_t seed) {
  Generator g(seed);
  return randn(s, {}, g).to(dt);
}

}  // namespace

TEST_CASE("16-bit dtypes: sizes, names, parsing, promotion", "[half]") {
  REQUIRE(element_size(kBFloat16) == 2);
  REQUIRE(element_size(kFloat16) == 2);
  REQUIRE(std::string(dtype_name(kBFloat16)) == "bfloat16");
  REQUIRE(std::string(dtype_name(kFloat16)) == "float16");
  REQUIRE(is_floating(kBFloat16));
  REQUIRE(is_half(kFloat16));
  REQUIRE_FALSE(is_half(kFloat32));
  REQUIRE(parse_dtype("bf16") == kBFloat16);
  REQUIRE(parse_dtype("half") == kFloat16);
  REQUIRE(parse_dtype("fp32") == kFloat32);
  REQUIRE_THROWS_WITH(parse_dtype("fp8"), Catch::Contains("unknown dtype 'fp8'"));
  REQUIRE(promote_floating(kBFloat16, kFloat32) == kFloat32);
  REQUIRE(promote_floating(kBFloat16, kFloat16) == kFloat32);
  REQUIRE(promote_floating(kFloat16, kFloat64) == kFloat64);
  REQUIRE(promote_floating(kBFloat16, kBFloat16) == kBFloat16);
}

TEST_CASE("16-bit conversion rounds to nearest even and keeps inf and NaN", "[half]") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  // 1 + 2^-8 is halfway between bf16's 1 and 1 + 2^-7: ties go to the even one (1);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: to 1 + 2^-6.
  const Tensor x = tensor({1.0f + 1.0f / 256, 1.0f + 3.0f / 256, -2.5f, inf, nan, 1e-3f, 70000.0f});
  const std::vector<float> b = x.to(kBFloat16).to(kFloat32).to_vector<float>();
  CHECK(b[0] == 1.0f);
  CHECK(b[1] == 1.0f + 4.0f / 256);
  CHECK(b[2] == -2.5f);
  CHECK(b[3] == inf);
  CHECK(std::isnan(b[4]));
  CHECK(std::abs(b[5] - 1e-3f) <= 1e-3f / 256);
  CHECK(b[6] == 70144.0f);  // bf16 has float32's range
  const std::vector<float> h = x.to(kFloat16).to(kFloat32).to_vector<float>();
  CHECK(h[0] == 1.0f + 1.0f / 256);  // float16 keeps 10 bits
  CHECK(h[3] == inf);
  CHECK(std::isnan(h[4]));
  CHECK(h[6] == inf);  // past float16's 65504
  // every conversion path: int64, bool, float64, and between the two 16-bit types
  CHECK(tensor(std::vector<int64_t>{3, -7}).to(kBFloat16).to_vector<float>() == std::vector<float>{3, -7});
  CHECK(tensor({0.f, 2.f}).to(kBool).to(kFloat16).to_vector<float>() == std::vector<float>{0, 1});
  CHECK(x.to(kFloat16).to(kBFloat16).to(kFloat64).to_vector<double>()[2] == -2.5);
  CHECK(tensor({2.75f}).to(kBFloat16).to(kInt64).item<int64_t>() == 2);
  CHECK(tensor({0.1f}).to(kBFloat16).item<float>() == half::bf16_to_float(half::float_to_bf16(0.1f)));
}

TEST_CASE("every float16 bit pattern widens exactly and rounds back to itself", "[half]") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint32_t e = (h >> 10) & 0x1F, m = h & 0x3FF;
    const double mag = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(1.0 + m / 1024.0, int(e) - 15);
    const float got = half::fp16_to_float(static_cast<uint16_t>(h));
    if (e == 31) {
      if (m == 0) REQUIRE(std::isinf(got));
      else REQUIRE(std::isnan(got));
    } else {
      INFO("bits " << h);
      REQUIRE(double(got) == ((h & 0x8000) ? -mag : mag));
      REQUIRE(half::float_to_fp16(got) == h);
    }
    const float b = half::bf16_to_float(static_cast<uint16_t>(h));
    if (!std::isnan(b)) REQUIRE(half::float_to_bf16(b) == h);
  }
}

TEST_CASE("16-bit tensors print their values and dtype", "[half]") {
  const std::string s = to_string(tensor({1.5f, -2.f}).to(kBFloat16));
  CHECK_THAT(s, Catch::Contains("1.5") && Catch::Contains("-2") && Catch::Contains("dtype=bfloat16"));
  CHECK_THAT(to_string(zeros({2}, {.dtype = kFloat16})), Catch::Contains("dtype=float16"));
}

TEST_CASE("16-bit creation, fill and random draws", "[half]") {
  CHECK(full({3}, 0.1, {.dtype = kBFloat16}).to_vector<float>() ==
        std::vector<float>(3, half::bf16_to_float(half::float_to_bf16(0.1f))));
  Generator g1(7), g2(7);
  const Tensor r16 = randn({64}, {.dtype = kBFloat16}, g1), r32 = randn({64}, {}, g2);
  CHECK(r16.dtype() == kBFloat16);
  CHECK(r16.to(kFloat32).to_vector<float>() == rounded(r32, kBFloat16));  // the same draws, rounded
}

TEST_CASE("16-bit element-wise ops are the float32 op rounded once", "[half]") {
  for (DType dt : {kBFloat16, kFloat16}) {
    INFO(dtype_name(dt));
    const Tensor a = half_randn({5, 7}, dt, 1), b = half_randn({7}, dt, 2).abs() + 0.5;
    const Tensor fa = a.to(kFloat32), fb = b.to(kFloat32);
    CHECK(b.dtype() == dt);
    CHECK((a + b).to(kFloat32).to_vector<float>() == rounded(fa + fb, dt));
    CHECK((a * b).to(kFloat32).to_vector<float>() == rounded(fa * fb, dt));
    CHECK((a / b).to(kFloat32).to_vector<float>() == rounded(fa / fb, dt));
    CHECK((a * 3.0).to(kFloat32).to_vector<float>() == rounded(fa * 3.0, dt));
    CHECK((1.0 - a).to(kFloat32).to_vector<float>() == rounded(1.0 - fa, dt));
    CHECK(a.exp().to(kFloat32).to_vector<float>() == rounded(fa.exp(), dt));
    CHECK(a.tanh().to(kFloat32).to_vector<float>() == rounded(fa.tanh(), dt));
    CHECK(a.relu().to(kFloat32).to_vector<float>() == rounded(fa.relu(), dt));
    CHECK(a.sigmoid().to(kFloat32).to_vector<float>() == rounded(fa.sigmoid(), dt));
    CHECK(gelu(a).to(kFloat32).to_vector<float>() == rounded(gelu(fa), dt));
    CHECK(a.gt(b).to_vector<bool>() == fa.gt(fb).to_vector<bool>());
    CHECK(where(a > 0.0, a, b).to(kFloat32).to_vector<float>() == where(fa > 0.0, fa, fb).to_vector<float>());
    CHECK(softmax(a, 1).to(kFloat32).to_vector<float>() == rounded(softmax(fa, 1), dt));
    // in place: computed in float32, rounded into the 16-bit destination
    Tensor c = a.clone();
    c.add_(b);
    CHECK(c.dtype() == dt);
    CHECK(c.to(kFloat32).to_vector<float>() == rounded(fa + fb, dt));
  }
}

TEST_CASE("16-bit reductions accumulate in float32", "[half]") {
  // A bfloat16 running sum of ones stops at 256 (256 + 1 rounds back to 256).
  const Tensor ones16 = ones({1000}, {.dtype = kBFloat16});
  CHECK(ones16.sum().dtype() == kBFloat16);
  CHECK(ones16.sum().item<float>() == 1000.0f);
  CHECK(ones16.mean().item<float>() == 1.0f);
  const Tensor a = half_randn({6, 50}, kFloat16, 3), fa = a.to(kFloat32);
  CHECK(a.sum(1).to(kFloat32).to_vector<float>() == rounded(fa.sum(1), kFloat16));
  CHECK(a.max(1).to(kFloat32).to_vector<float>() == fa.max(1).to_vector<float>());  // exact: a value of a
  CHECK(a.argmax(1).to_vector<int64_t>() == fa.argmax(1).to_vector<int64_t>());
  CHECK(cumsum(a, 1).to(kFloat32).to_vector<float>() == rounded(cumsum(fa, 1), kFloat16));
}

TEST_CASE("16-bit matmul, linear and conv2d: float32 products and sums, one rounding", "[half]") {
  for (DType dt : {kBFloat16, kFloat16}) {
    INFO(dtype_name(dt));
    const Tensor x = half_randn({4, 3, 6, 6}, dt, 4), w = half_randn({5, 3, 3, 3}, dt, 5), bias = half_randn({5}, dt, 6);
    const Tensor y = conv2d(x, w, bias, {.padding = {1, 1}});
    CHECK(y.dtype() == dt);
    CHECK(y.to(kFloat32).to_vector<float>() ==
          rounded(conv2d(x.to(kFloat32), w.to(kFloat32), bias.to(kFloat32), {.padding = {1, 1}}), dt));
    const Tensor p = half_randn({8, 16}, dt, 7), q = half_randn({16, 3}, dt, 8), lw = half_randn({3, 16}, dt, 9);
    CHECK(matmul(p, q).to(kFloat32).to_vector<float>() == rounded(matmul(p.to(kFloat32), q.to(kFloat32)), dt));
    CHECK(linear(p, lw, Tensor()).to(kFloat32).to_vector<float>() ==
          rounded(linear(p.to(kFloat32), lw.to(kFloat32), Tensor()), dt));
    const Tensor pooled = max_pool2d(y, {.kernel = {2, 2}, .stride = {2, 2}});
    CHECK(pooled.to(kFloat32).to_vector<float>() == max_pool2d(y.to(kFloat32), {.kernel = {2, 2}, .stride = {2, 2}}).to_vector<float>());
  }
}

TEST_CASE("16-bit tensors mixed with float32 promote; float32 with float64 still fails", "[half]") {
  const Tensor h = tensor({1.f, 2.f}).to(kBFloat16), f = tensor({0.5f, 0.25f}), d = tensor({1.0}, {1}, {.dtype = kFloat64});
  CHECK((h + f).dtype() == kFloat32);
  CHECK((h + f).to_vector<float>() == std::vector<float>{1.5f, 2.25f});
  CHECK((h * tensor({2.f, 2.f}).to(kFloat16)).dtype() == kFloat32);
  CHECK(h.lt(f).to_vector<bool>() == std::vector<bool>{false, false});
  REQUIRE_THROWS_WITH(f + d, Catch::Contains("dtypes differ"));
  Tensor acc = zeros({2});
  acc.add_(h);  // a 16-bit source into a float32 destination: widened, exactly
  CHECK(acc.to_vector<float>() == std::vector<float>{1, 2});
}

TEST_CASE("16-bit autograd: gradients come back in each input's dtype", "[half]") {
  const Tensor x16 = tensor({0.5f, -1.5f, 2.f}).to(kBFloat16).requires_grad_(true);
  const Tensor w32 = tensor({1.f, 2.f, 3.f}).requires_grad_(true);
  (x16 * w32).sum().backward();  // bf16 * f32 promotes to f32
  REQUIRE(x16.grad().dtype() == kBFloat16);
  REQUIRE(w32.grad().dtype() == kFloat32);
  CHECK(x16.grad().to_vector<float>() == std::vector<float>{1, 2, 3});
  CHECK(w32.grad().to_vector<float>() == std::vector<float>{0.5f, -1.5f, 2.f});
  // through a conv in bfloat16 against the float32 graph on the same (rounded) values
  const Tensor x = half_randn({2, 2, 5, 5}, kBFloat16, 10).requires_grad_(true);
  const Tensor w = half_randn({3, 2, 3, 3}, kBFloat16, 11).requires_grad_(true);
  conv2d(x, w, Tensor(), {}).relu().sum().backward();
  const Tensor xf = x.detach().to(kFloat32).requires_grad_(true), wf = w.detach().to(kFloat32).requires_grad_(true);
  conv2d(xf, wf, Tensor(), {}).relu().sum().backward();
  const std::vector<float> g16 = w.grad().to(kFloat32).to_vector<float>(), g32 = wf.grad().to_vector<float>();
  for (size_t i = 0; i < g16.size(); ++i) CHECK(g16[i] == Approx(g32[i]).epsilon(1.0 / 64).margin(0.05));
}

TEST_CASE("16-bit copies of transposes, gathers, in-place mixes and addmm_", "[half]") {
  const Tensor a = half_randn({5, 3}, kBFloat16, 13);
  // a transposed 16-bit matrix made contiguous: its bits moved (no dtype kernel needed)
  CHECK(a.t().contiguous().to(kFloat32).to_vector<float>() == a.to(kFloat32).t().contiguous().to_vector<float>());
  CHECK(a.t().reshape({-1}).to(kFloat32).to_vector<float>() == a.to(kFloat32).t().reshape({-1}).to_vector<float>());
  // gather and index_select move 16-bit values as they are
  const Tensor idx = tensor(std::vector<int64_t>{4, 0, 2});
  CHECK(a.index_select(0, idx).to(kFloat32).to_vector<float>() == a.to(kFloat32).index_select(0, idx).to_vector<float>());
  // a scalar is compared in the tensor's type, as in PyTorch: bf16(0.1) == 0.1
  CHECK(raw::compare_scalar(raw::Compare::Eq, full({2}, 0.1, {.dtype = kBFloat16}), 0.1).to_vector<bool>() ==
        std::vector<bool>{true, true});
  // a float64 source into a 16-bit destination
  Tensor h = ones({2}, {.dtype = kBFloat16});
  h.add_(tensor({0.5, 0.25}, {2}, {.dtype = kFloat64}));
  CHECK(h.to_vector<float>() == std::vector<float>{1.5f, 1.25f});
  // addmm_ on 16-bit: c + a @ b in float32, rounded once
  const Tensor p = half_randn({8, 8}, kBFloat16, 14), q = half_randn({8, 8}, kBFloat16, 15);
  Tensor c = half_randn({8, 8}, kBFloat16, 16);
  const std::vector<float> want =
      rounded(c.to(kFloat32) + matmul(p.to(kFloat32), q.to(kFloat32)), kBFloat16);
  raw::addmm_(c, p, q);
  CHECK(c.to(kFloat32).to_vector<float>() == want);
  // integer tensors never reach a convolution kernel
  const Tensor xi = zeros({1, 1, 3, 3}, {.dtype = kInt64}), wi = zeros({1, 1, 3, 3}, {.dtype = kInt64});
  REQUIRE_THROWS_WITH(raw::conv2d(xi, wi, Tensor(), {}), Catch::Contains("conv2d: expected a floating-point tensor"));
}

TEST_CASE("an op without a 16-bit path names the dtype and the way out", "[half]") {
  const Tensor x = half_randn({2, 4}, kBFloat16, 12);
  REQUIRE_THROWS_WITH(fused_layer_norm(x, 4, Tensor(), Tensor(), 1e-5), Catch::Contains("bfloat16"));
}
