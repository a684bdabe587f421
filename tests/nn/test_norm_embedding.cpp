// Issue 19's layers: LayerNorm, RMSNorm, GroupNorm, BatchNorm1d, Embedding (with a
// padding index), Dropout2d, AdaptiveAvgPool2d, and Module::to(DType). Values against
// the definitions computed here element by element, gradchecks in float64 (the modules
// converted with to(kFloat64)), and the errors.
#include <cmath>

#include "../helpers.h"
#include "nn/embedding.h"
#include "nn/normalization.h"

using namespace weft;
using test::leaf;
using V = std::vector<Tensor>;
using Catch::Matchers::Contains;

namespace {

// Random affine parameters, so that weight and bias are really exercised.
void randomise(nn::Module& m, uint64_t seed) {
  Generator g(seed);
  autograd::NoGradGuard no_grad;
  for (Tensor p : m.parameters()) p.copy_(randn(p.shape(), {.dtype = p.dtype()}, g));
}

}  // namespace

TEST_CASE("LayerNorm and RMSNorm follow their definitions over the last dims", "[nn][norm]") {
  Tensor x = leaf({2, 3, 4}, 5).detach();
  nn::LayerNorm ln({4});
  nn::RMSNorm rms({3, 4}, 1e-6);
  ln.to(kFloat64), rms.to(kFloat64);
  randomise(ln, 1), randomise(rms, 2);
  const auto xv = x.to_vector<double>(), y = ln(x).to_vector<double>(), z = rms(x).to_vector<double>();
  const auto w = ln.weight.to_vector<double>(), b = ln.bias.to_vector<double>(), rw = rms.weight.to_vector<double>();
  for (int row = 0; row < 6; ++row) {  // LayerNorm: each row of 4
    double mean = 0, var = 0;
    for (int k = 0; k < 4; ++k) mean += xv[size_t(row * 4 + k)] / 4;
    for (int k = 0; k < 4; ++k) var += std::pow(xv[size_t(row * 4 + k)] - mean, 2) / 4;
    for (int k = 0; k < 4; ++k)
      CHECK(y[size_t(row * 4 + k)] ==
            Approx((xv[size_t(row * 4 + k)] - mean) / std::sqrt(var + 1e-5) * w[size_t(k)] + b[size_t(k)]).epsilon(1e-12));
  }
  for (int s = 0; s < 2; ++s) {  // RMSNorm: each sample's 12
    double ms = 0;
    for (int k = 0; k < 12; ++k) ms += std::pow(xv[size_t(s * 12 + k)], 2) / 12;
    for (int k = 0; k < 12; ++k)
      CHECK(z[size_t(s * 12 + k)] == Approx(xv[size_t(s * 12 + k)] / std::sqrt(ms + 1e-6) * rw[size_t(k)]).epsilon(1e-12));
  }
  // Gradients through input, weight and bias.
  REQUIRE_GRADCHECK([&](const V& v) { return ln(v[0]); }, {leaf({2, 3, 4}, 6)});
  REQUIRE_GRADCHECK([&](const V& v) { return nn::layer_norm(v[0], 2, 1e-5) * v[1]; }, {leaf({2, 3, 4}, 7), leaf({3, 4}, 8)});
  REQUIRE_GRADCHECK([&](const V& v) { return rms(v[0]); }, {leaf({2, 3, 4}, 9)});
  ln.zero_grad();
  (ln(leaf({2, 3, 4}, 3)) * leaf({2, 3, 4}, 4).detach()).sum().backward();
  CHECK(ln.weight.grad().defined());
  CHECK(ln.bias.grad().defined());
  // RMSNorm's eps unset: the dtype's machine epsilon.
  nn::RMSNorm plain({4});
  CHECK(plain.repr() == "RMSNorm((4), eps=None, elementwise_affine=True)");
  REQUIRE_THROWS_WITH(ln(leaf({2, 3}, 1)), Contains("LayerNorm((4)): input (2,3) must end in (4)"));
}

TEST_CASE("LayerNorm's fused CPU kernel: gradcheck through x, w and b; float equals the composition", "[nn][norm]") {
  // Through all three inputs, in double (the kernel's own backward, not the composition's).
  REQUIRE_GRADCHECK([](const V& v) { return weft::fused_layer_norm(v[0], 12, v[1], v[2], 1e-5); },
                    {leaf({2, 3, 4}, 11), leaf({12}, 12), leaf({12}, 13)});
  REQUIRE_GRADCHECK([](const V& v) { return weft::fused_layer_norm(v[0], 5, Tensor(), Tensor(), 1e-5); }, {leaf({3, 5}, 14)});
  // float32, a non-contiguous input (LayerNorm makes it contiguous), 37 rows of 40 (a
  // partial block of columns for the weight gradient): values and all three gradients
  // against the composition of ordinary ops.
  nn::LayerNorm ln({40});
  randomise(ln, 15);
  const Tensor base = leaf({40, 37}, 16).detach().to(kFloat32), up = leaf({37, 40}, 17).detach().to(kFloat32);
  auto run = [&](bool fused) {
    ln.zero_grad();
    Tensor x = base.clone().requires_grad_(true);
    const Tensor xt = x.t();  // (37, 40), not contiguous
    const Tensor y = fused ? ln(xt) : nn::layer_norm(xt, 1, 1e-5) * ln.weight + ln.bias;
    (y * up).sum().backward();
    return std::vector<std::vector<float>>{y.to_vector<float>(), x.grad().to_vector<float>(),
                                           ln.weight.grad().to_vector<float>(), ln.bias.grad().to_vector<float>()};
  };
  const auto fused = run(true), composed = run(false);
  for (size_t k = 0; k < fused.size(); ++k) {
    INFO("output " << k << " (y, dx, dw, db)");
    REQUIRE_THAT(fused[k], Catch::Matchers::Approx(composed[k]).epsilon(1e-4).margin(2e-5));
  }
  REQUIRE_THROWS_WITH(weft::fused_layer_norm(zeros({3, 4}).t(), 3, Tensor(), Tensor(), 1e-5),
                      Contains("layer_norm: needs a contiguous float or double CPU tensor"));
  REQUIRE_THROWS_WITH(weft::fused_layer_norm(zeros({3, 4}), 4, zeros({3}), Tensor(), 1e-5),
                      Contains("weight and bias must be contiguous float32 tensors of 4 elements"));
}

TEST_CASE("GroupNorm normalises each group of channels; BatchNorm1d each channel over the batch", "[nn][norm]") {
  nn::GroupNorm gn(2, 4);
  gn.to(kFloat64);
  randomise(gn, 3);
  Tensor x = leaf({2, 4, 3}, 11).detach();
  const auto xv = x.to_vector<double>(), y = gn(x).to_vector<double>();
  const auto w = gn.weight.to_vector<double>(), b = gn.bias.to_vector<double>();
  for (int n = 0; n < 2; ++n)
    for (int g = 0; g < 2; ++g) {  // group g: channels 2g, 2g+1, 6 values
      const size_t base = size_t(n * 12 + g * 6);
      double mean = 0, var = 0;
      for (size_t k = 0; k < 6; ++k) mean += xv[base + k] / 6;
      for (size_t k = 0; k < 6; ++k) var += std::pow(xv[base + k] - mean, 2) / 6;
      for (size_t k = 0; k < 6; ++k) {
        const size_t c = size_t(2 * g) + k / 3;
        CHECK(y[base + k] == Approx((xv[base + k] - mean) / std::sqrt(var + 1e-5) * w[c] + b[c]).epsilon(1e-12));
      }
    }
  REQUIRE_GRADCHECK([&](const V& v) { return gn(v[0]); }, {leaf({2, 4, 3}, 12)});
  REQUIRE_THROWS_WITH(nn::GroupNorm(3, 4), Contains("4 channels do not split into 3 equal groups"));
  REQUIRE_THROWS_WITH(gn(leaf({2, 3, 3}, 1)), Contains("must be (N, 4, *)"));

  // BatchNorm1d on (N, C) and (N, C, L), training then eval, against BatchNorm2d on the
  // same values seen as (N, C, L, 1).
  for (bool with_length : {false, true}) {
    INFO("with length " << with_length);
    nn::BatchNorm1d bn1(3);
    nn::BatchNorm2d bn2(3);
    Tensor a = with_length ? leaf({4, 3, 5}, 13).detach().to(kFloat32) : leaf({6, 3}, 13).detach().to(kFloat32);
    Tensor as4 = with_length ? a.reshape({4, 3, 5, 1}) : a.reshape({6, 3, 1, 1});
    CHECK(equal(bn1(a), bn2(as4).reshape(a.shape())));
    CHECK(equal(bn1.running_mean, bn2.running_mean));
    CHECK(equal(bn1.running_var, bn2.running_var));
    bn1.eval(), bn2.eval();
    CHECK(equal(bn1(a), bn2(as4).reshape(a.shape())));
  }
  nn::BatchNorm1d bn(3);
  bn.to(kFloat64);
  REQUIRE_GRADCHECK([&](const V& v) { return bn(v[0]); }, {leaf({5, 3}, 14)});
  CHECK(bn.num_batches_tracked.dtype() == kInt64);  // to(kFloat64) leaves integer buffers alone
  REQUIRE_THROWS_WITH(bn(leaf({5, 4}, 1)), Contains("BatchNorm1d(3): input (5,4) must be (N, 3) or (N, 3, L)"));
}

TEST_CASE("Embedding looks rows up; repeated rows add their gradients; the padding row gets none", "[nn][embedding]") {
  nn::Embedding emb(5, 3, /*padding_idx=*/-1);  // -1: row 4
  CHECK(emb.padding_idx == 4);
  CHECK(equal(emb.weight.narrow(0, 4, 1), zeros({1, 3})));
  const Tensor idx = tensor(std::vector<int64_t>{1, 4, 1, 0, 2, 4}, {2, 3});
  Tensor out = emb(idx);
  REQUIRE(out.shape() == Shape({2, 3, 3}));
  for (int i = 0; i < 6; ++i) {
    const int64_t row = idx.to_vector<int64_t>()[size_t(i)];
    CHECK(equal(out.reshape({6, 3}).narrow(0, i, 1), emb.weight.narrow(0, row, 1)));
  }
  {
    autograd::NoGradGuard no_grad;
    emb.weight.narrow(0, 4, 1).fill_(7.0);  // forward still returns the padding row as it is
  }
  CHECK(emb(idx).reshape({6, 3}).narrow(0, 1, 1).to_vector<float>() == std::vector<float>{7, 7, 7});
  Tensor g = leaf({2, 3, 3}, 15).detach().to(kFloat32);
  (emb(idx) * g).sum().backward();
  const Tensor dw = emb.weight.grad(), gv = g.reshape({6, 3});
  CHECK(equal(dw.narrow(0, 1, 1), gv.narrow(0, 0, 1) + gv.narrow(0, 2, 1)));  // row 1 used twice
  CHECK(equal(dw.narrow(0, 0, 1), gv.narrow(0, 3, 1)));
  CHECK(equal(dw.narrow(0, 3, 1), zeros({1, 3})));  // never looked up
  CHECK(equal(dw.narrow(0, 4, 1), zeros({1, 3})));  // padding
  REQUIRE_GRADCHECK([](const V& v) { return nn::embedding(v[0], tensor(std::vector<int64_t>{2, 0, 2}), std::nullopt); },
                    {leaf({3, 2}, 16)});
  REQUIRE_THROWS_WITH(emb(tensor(std::vector<int64_t>{5})), Contains("5"));
  REQUIRE_THROWS_WITH(emb(tensor({1.0f})), Contains("embedding: indices must be int64"));
  REQUIRE_THROWS_WITH(nn::Embedding(5, 3, 5), Contains("padding_idx 5 is outside [-5, 5)"));
  CHECK(emb.repr() == "Embedding(5, 3, padding_idx=4)");
}

TEST_CASE("Dropout2d drops whole channels; AdaptiveAvgPool2d averages PyTorch's bins", "[nn][layers]") {
  nn::Dropout2d drop(0.5);
  Tensor x = ones({4, 8, 3, 3});
  const auto y = drop(x).to_vector<float>();
  int dropped = 0;
  for (int nc = 0; nc < 32; ++nc) {
    const float first = y[size_t(nc * 9)];
    CHECK((first == 0.0f || first == 2.0f));  // kept channels are scaled by 1 / (1 - p)
    for (int k = 1; k < 9; ++k) CHECK(y[size_t(nc * 9 + k)] == first);  // one value per channel
    dropped += first == 0.0f;
  }
  CHECK(dropped > 4);
  CHECK(dropped < 28);
  drop.eval();
  CHECK(equal(drop(x), x));
  REQUIRE_THROWS_WITH(drop(ones({4, 8})), Contains("Dropout2d: input (4,8)"));

  // 5 rows into 3 bins: [0, 2), [1, 4), [3, 5) -- overlapping, as PyTorch's.
  nn::AdaptiveAvgPool2d pool(3, 2);
  Tensor a = leaf({1, 2, 5, 4}, 17).detach();
  const auto av = a.to_vector<double>(), pv = pool(a).to_vector<double>();
  const int rows[3][2] = {{0, 2}, {1, 4}, {3, 5}}, cols[2][2] = {{0, 2}, {2, 4}};
  for (int c = 0; c < 2; ++c)
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 2; ++j) {
        double sum = 0;
        int count = 0;
        for (int r = rows[i][0]; r < rows[i][1]; ++r)
          for (int q = cols[j][0]; q < cols[j][1]; ++q) sum += av[size_t(c * 20 + r * 4 + q)], ++count;
        CHECK(pv[size_t(c * 6 + i * 2 + j)] == Approx(sum / count).epsilon(1e-12));
      }
  REQUIRE_GRADCHECK([&](const V& v) { return pool(v[0]); }, {leaf({1, 2, 5, 4}, 18)});
  nn::AdaptiveAvgPool2d even(2), global(1);
  Tensor b = leaf({2, 3, 4, 6}, 19);
  CHECK(even(b).shape() == Shape({2, 3, 2, 2}));  // divides: one AvgPool2d of 2 x 3
  CHECK(equal(global(b), b.mean({2, 3}, true)));
  REQUIRE_GRADCHECK([&](const V& v) { return even(v[0]); }, {leaf({1, 2, 4, 6}, 20)});
}

TEST_CASE("Module::to(DType) converts parameters, buffers and gradients in place", "[nn][dtype]") {
  auto net = std::make_shared<nn::Sequential>();
  net->add<nn::Linear>(3, 2), net->add<nn::BatchNorm1d>(2);
  const Tensor w = net->parameters()[0];  // a handle held elsewhere (an optimizer's)
  (*net)(ones({4, 3})).sum().backward();
  net->to(kFloat64);
  CHECK(w.dtype() == kFloat64);
  CHECK(w.grad().dtype() == kFloat64);
  for (const auto& [name, t] : net->state_dict()) {
    INFO(name);
    CHECK(t.dtype() == (name.find("num_batches_tracked") != std::string::npos ? kInt64 : kFloat64));
  }
  // The whole model gradchecks in float64.
  REQUIRE_GRADCHECK([&](const V& v) { return (*net)(v[0]); }, {leaf({4, 3}, 21)});
  REQUIRE_THROWS_WITH(net->to(kInt64), Contains("is not a floating-point dtype"));
}
