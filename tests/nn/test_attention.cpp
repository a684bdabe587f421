// scaled_dot_product_attention and MultiheadAttention (issue 19): against the formula
// computed element by element, causality as a property (later inputs never change
// earlier outputs), masks, gradchecks in float64, and PyTorch's parameter names.
#include <cmath>

#include "../helpers.h"
#include "nn/attention.h"

using namespace weft;
using test::leaf;
using V = std::vector<Tensor>;
using Catch::Matchers::Contains;

namespace {

// softmax(q k^T / sqrt(E) + mask) v for one (L, E) x (S, E) x (S, Ev) problem, by loops;
// allowed(i, j) false masks the pair out.
template <class Allowed>
std::vector<double> reference(const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v,
                              int L, int S, int E, int Ev, Allowed allowed) {
  std::vector<double> out(size_t(L * Ev), 0.0);
  for (int i = 0; i < L; ++i) {
    std::vector<double> s(static_cast<size_t>(S));
    double mx = -INFINITY;
    for (int j = 0; j < S; ++j) {
      double dot = 0;
      for (int e = 0; e < E; ++e) dot += q[size_t(i * E + e)] * k[size_t(j * E + e)];
      s[size_t(j)] = allowed(i, j) ? dot / std::sqrt(double(E)) : -INFINITY;
      mx = std::max(mx, s[size_t(j)]);
    }
    double z = 0;
    for (double& x : s) z += (x = std::exp(x - mx));
    for (int j = 0; j < S; ++j)
      for (int e = 0; e < Ev; ++e) out[size_t(i * Ev + e)] += s[size_t(j)] / z * v[size_t(j * Ev + e)];
  }
  return out;
}

void check_close(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(want[i]).epsilon(1e-10).margin(1e-12));
}

}  // namespace

TEST_CASE("scaled_dot_product_attention is softmax(q k^T / sqrt(E) + mask) v", "[nn][attention]") {
  const int L = 3, S = 4, E = 5, Ev = 2;
  Tensor q = leaf({L, E}, 1).detach(), k = leaf({S, E}, 2).detach(), v = leaf({S, Ev}, 3).detach();
  const auto qv = q.to_vector<double>(), kv = k.to_vector<double>(), vv = v.to_vector<double>();
  check_close(nn::scaled_dot_product_attention(q, k, v).to_vector<double>(),
              reference(qv, kv, vv, L, S, E, Ev, [](int, int) { return true; }));
  check_close(nn::scaled_dot_product_attention(q, k, v, {}, /*is_causal=*/true).to_vector<double>(),
              reference(qv, kv, vv, L, S, E, Ev, [](int i, int j) { return j <= i; }));
  // A bool mask: true takes part. Key 1 hidden from every query, key 3 from query 0.
  std::vector<float> m(size_t(L * S), 1.0f);
  for (int i = 0; i < L; ++i) m[size_t(i * S + 1)] = 0;
  m[3] = 0;
  const Tensor mask = tensor(m, {L, S}).to(kBool);
  check_close(nn::scaled_dot_product_attention(q, k, v, mask).to_vector<double>(),
              reference(qv, kv, vv, L, S, E, Ev, [](int i, int j) { return j != 1 && !(i == 0 && j == 3); }));
  // A float mask is added: -inf there is the same as false in a bool mask.
  const Tensor additive = tensor(m, {L, S}).to(kFloat64).log();  // log 1 = 0, log 0 = -inf
  CHECK(equal(nn::scaled_dot_product_attention(q, k, v, additive), nn::scaled_dot_product_attention(q, k, v, mask)));
  // A query that may attend nothing gets NaN, as PyTorch's math path.
  const Tensor none = zeros({L, S}).to(kBool);
  for (double x : nn::scaled_dot_product_attention(q, k, v, none).to_vector<double>()) CHECK(std::isnan(x));
  // Batched (B, H, L, E), and gradients through q, k and v.
  Tensor qb = leaf({2, 3, L, E}, 4), kb = leaf({2, 3, S, E}, 5), vb = leaf({2, 3, S, Ev}, 6);
  REQUIRE_GRADCHECK([](const V& x) { return nn::scaled_dot_product_attention(x[0], x[1], x[2], {}, true); },
                    {qb, kb, vb});
  REQUIRE_GRADCHECK([&](const V& x) { return nn::scaled_dot_product_attention(x[0], x[1], x[2], mask); }, {qb, kb, vb});
  REQUIRE_THROWS_WITH(nn::scaled_dot_product_attention(q, leaf({S, E + 1}, 1), v), Contains("must be (..., L, E)"));
  REQUIRE_THROWS_WITH(nn::scaled_dot_product_attention(q, k, v, mask, true), Contains("not both"));
}

TEST_CASE("MultiheadAttention: heads by hand, causality, PyTorch's names, gradients", "[nn][attention]") {
  manual_seed(3);
  nn::MultiheadAttention mha(6, 2, /*causal=*/true);
  mha.to(kFloat64);
  std::vector<std::string> names;
  for (const auto& [name, t] : mha.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"});
  {
    Generator g(9);  // non-zero biases, so they are exercised
    autograd::NoGradGuard no_grad;
    mha.in_proj_bias.copy_(randn({18}, {.dtype = kFloat64}, g));
    mha.out_proj->bias.copy_(randn({6}, {.dtype = kFloat64}, g));
  }
  const Tensor x = leaf({2, 4, 6}, 7).detach();
  const Tensor y = mha(x);
  REQUIRE(y.shape() == Shape({2, 4, 6}));

  // The same by hand: project, per head causal attention on 3-wide slices, concatenate,
  // project back.
  const auto W = mha.in_proj_weight.to_vector<double>(), bi = mha.in_proj_bias.to_vector<double>();
  const auto Wo = mha.out_proj->weight.to_vector<double>(), bo = mha.out_proj->bias.to_vector<double>();
  const auto xv = x.to_vector<double>(), yv = y.to_vector<double>();
  for (int b = 0; b < 2; ++b) {
    std::vector<double> proj(size_t(4 * 18));  // (T, 3E)
    for (int t = 0; t < 4; ++t)
      for (int o = 0; o < 18; ++o) {
        double s = bi[size_t(o)];
        for (int e = 0; e < 6; ++e) s += xv[size_t(b * 24 + t * 6 + e)] * W[size_t(o * 6 + e)];
        proj[size_t(t * 18 + o)] = s;
      }
    std::vector<double> concat(size_t(4 * 6));
    for (int h = 0; h < 2; ++h) {
      std::vector<double> q(12), k(12), v(12);
      for (int t = 0; t < 4; ++t)
        for (int d = 0; d < 3; ++d) {
          q[size_t(t * 3 + d)] = proj[size_t(t * 18 + h * 3 + d)];
          k[size_t(t * 3 + d)] = proj[size_t(t * 18 + 6 + h * 3 + d)];
          v[size_t(t * 3 + d)] = proj[size_t(t * 18 + 12 + h * 3 + d)];
        }
      const auto o = reference(q, k, v, 4, 4, 3, 3, [](int i, int j) { return j <= i; });
      for (int t = 0; t < 4; ++t)
        for (int d = 0; d < 3; ++d) concat[size_t(t * 6 + h * 3 + d)] = o[size_t(t * 3 + d)];
    }
    for (int t = 0; t < 4; ++t)
      for (int o = 0; o < 6; ++o) {
        double s = bo[size_t(o)];
        for (int e = 0; e < 6; ++e) s += concat[size_t(t * 6 + e)] * Wo[size_t(o * 6 + e)];
        CHECK(yv[size_t(b * 24 + t * 6 + o)] == Approx(s).epsilon(1e-10));
      }
  }

  // Causal: changing the last two positions leaves the first two outputs alone.
  Tensor x2 = x.clone();
  {
    autograd::NoGradGuard no_grad;
    x2.narrow(1, 2, 2).fill_(5.0);
  }
  const Tensor y2 = mha(x2);
  CHECK(equal(y2.narrow(1, 0, 2), y.narrow(1, 0, 2)));
  CHECK(!equal(y2.narrow(1, 2, 2), y.narrow(1, 2, 2)));
  // Separate query, key and value tensors take the per-projection path: the same result.
  const Tensor xc = x.clone();
  const auto fused = mha.attend(x, x, x, {}, true).to_vector<double>();
  const auto split = mha.attend(x, xc, x.clone(), {}, true).to_vector<double>();
  for (size_t i = 0; i < fused.size(); ++i) CHECK(split[i] == Approx(fused[i]).epsilon(1e-12));

  REQUIRE_GRADCHECK([&](const V& v) { return mha(v[0]); }, {leaf({1, 3, 6}, 8)});
  mha.zero_grad();
  mha(leaf({2, 3, 6}, 9)).sum().backward();
  for (const Tensor& p : mha.parameters()) CHECK(p.grad().defined());
  REQUIRE_THROWS_WITH(nn::MultiheadAttention(6, 4), Contains("embed_dim 6 must split into 4 equal heads"));
  REQUIRE_THROWS_WITH(mha(leaf({2, 3, 5}, 1)), Contains("must be (B, T, 6)"));
  CHECK(mha.repr() == "MultiheadAttention(embed_dim=6, num_heads=2, causal=True)");
}
