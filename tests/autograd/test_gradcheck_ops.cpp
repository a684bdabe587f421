// A finite-difference gradcheck for every differentiable op, on broadcast shapes and
// on non-contiguous (transposed, sliced, expanded) inputs.
#include "../helpers.h"

using namespace weft;
using test::leaf;
using test::positive_leaf;
using V = std::vector<Tensor>;

TEST_CASE("gradcheck: binary arithmetic with broadcasting", "[gradcheck]") {
  Tensor a = leaf({3, 4}, 1), b = leaf({4}, 2), c = positive_leaf({3, 1}, 3);
  REQUIRE_GRADCHECK([](const V& v) { return v[0] + v[1]; }, {a, b});
  REQUIRE_GRADCHECK([](const V& v) { return v[0] - v[1]; }, {a, b});
  REQUIRE_GRADCHECK([](const V& v) { return v[0] * v[1]; }, {a, b});
  REQUIRE_GRADCHECK([](const V& v) { return v[0] / v[1]; }, {a, c});
  REQUIRE_GRADCHECK([](const V& v) { return v[1] / v[0]; }, {c, b});
  REQUIRE_GRADCHECK([](const V& v) { return maximum(v[0], v[1]); }, {a, b});
  REQUIRE_GRADCHECK([](const V& v) { return minimum(v[0], v[1]); }, {a, b});
}

TEST_CASE("gradcheck: scalar arithmetic", "[gradcheck]") {
  Tensor a = positive_leaf({2, 3});
  REQUIRE_GRADCHECK([](const V& v) { return v[0] + 2.0; }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0] - 2.0; }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return 2.0 - v[0]; }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0] * 3.0; }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0] / 3.0; }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return 3.0 / v[0]; }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return -v[0]; }, {a});
}

TEST_CASE("gradcheck: unary math", "[gradcheck]") {
  Tensor a = leaf({3, 4}, 4), p = positive_leaf({3, 4}, 5);
  REQUIRE_GRADCHECK([](const V& v) { return v[0].exp(); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].log(); }, {p});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].sqrt(); }, {p});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].pow(3.0); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].pow(-1.5); }, {p});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].abs(); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].relu(); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].sigmoid(); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].tanh(); }, {a});
}

TEST_CASE("gradcheck: pow with a tensor exponent, broadcast", "[gradcheck]") {
  Tensor base = positive_leaf({2, 3}, 6), e = leaf({3}, 7);
  REQUIRE_GRADCHECK([](const V& v) { return v[0].pow(v[1]); }, {base, e});
}

TEST_CASE("gradcheck: where", "[gradcheck]") {
  Tensor a = leaf({3, 4}, 8), b = leaf({4}, 9);
  Tensor cond = leaf({3, 4}, 10).detach() > 0.0;
  REQUIRE_GRADCHECK([cond](const V& v) { return where(cond, v[0], v[1]); }, {a, b});
}

TEST_CASE("gradcheck: reductions", "[gradcheck]") {
  Tensor a = leaf({2, 3, 4}, 11);
  REQUIRE_GRADCHECK([](const V& v) { return v[0].sum(); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].sum(1); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].sum(-1, true); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].sum({0, 2}); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].mean(); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].mean(0, true); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].mean({1, 2}); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].max(); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].max(1); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].min(2, true); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return amax(v[0], {0, 1}); }, {a});
}

TEST_CASE("gradcheck: matmul in every shape combination", "[gradcheck]") {
  REQUIRE_GRADCHECK([](const V& v) { return v[0].matmul(v[1]); }, {leaf({3, 4}, 1), leaf({4, 5}, 2)});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].matmul(v[1]); }, {leaf({2, 3, 4}, 3), leaf({2, 4, 2}, 4)});
  // batch broadcasting: (2,3,4) @ (4,5) and (3,4) @ (2,4,5)
  REQUIRE_GRADCHECK([](const V& v) { return v[0].matmul(v[1]); }, {leaf({2, 3, 4}, 5), leaf({4, 5}, 6)});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].matmul(v[1]); }, {leaf({3, 4}, 7), leaf({2, 4, 5}, 8)});
  // vectors
  REQUIRE_GRADCHECK([](const V& v) { return v[0].matmul(v[1]); }, {leaf({4}, 9), leaf({4, 3}, 10)});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].matmul(v[1]); }, {leaf({3, 4}, 11), leaf({4}, 12)});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].matmul(v[1]); }, {leaf({4}, 13), leaf({4}, 14)});
}

TEST_CASE("gradcheck: matmul on transposed (non-contiguous) operands", "[gradcheck]") {
  Tensor a = leaf({4, 3}, 15), b = leaf({5, 4}, 16);
  REQUIRE_GRADCHECK([](const V& v) { return v[0].t().matmul(v[1].t()); }, {a, b});
  Tensor c = leaf({6, 8}, 17);  // a strided slice: every other column
  REQUIRE_GRADCHECK([](const V& v) { return v[0].slice(1, 0, 8, 2).matmul(v[1]); }, {c, leaf({4, 3}, 18)});
}

TEST_CASE("gradcheck: softmax and log_softmax over each dim", "[gradcheck]") {
  Tensor a = leaf({3, 4, 2}, 19);
  for (int64_t d : {0, 1, 2, -1}) {
    REQUIRE_GRADCHECK([d](const V& v) { return v[0].softmax(d); }, {a});
    REQUIRE_GRADCHECK([d](const V& v) { return v[0].log_softmax(d); }, {a});
  }
  REQUIRE_GRADCHECK([](const V& v) { return v[0].transpose(0, 1).log_softmax(1); }, {a});
}

TEST_CASE("gradcheck: gather and index_select", "[gradcheck]") {
  Tensor a = leaf({4, 5}, 20);
  Tensor idx = tensor(std::vector<int64_t>{0, 4, 4, 1, 2, 2, 3, 0}, {4, 2});
  REQUIRE_GRADCHECK([idx](const V& v) { return v[0].gather(1, idx); }, {a});
  Tensor idx0 = tensor(std::vector<int64_t>{3, 3, 0, 1, 2}, {1, 5});
  REQUIRE_GRADCHECK([idx0](const V& v) { return v[0].gather(0, idx0); }, {a});
  Tensor sel = tensor(std::vector<int64_t>{2, 0, 2});
  REQUIRE_GRADCHECK([sel](const V& v) { return v[0].index_select(0, sel); }, {a});
  REQUIRE_GRADCHECK([sel](const V& v) { return v[0].index_select(1, sel); }, {a});
  REQUIRE_GRADCHECK([sel](const V& v) { return v[0].t().index_select(0, sel); }, {a});
}

TEST_CASE("gradcheck: views", "[gradcheck]") {
  Tensor a = leaf({2, 3, 4}, 21);
  REQUIRE_GRADCHECK([](const V& v) { return v[0].reshape({6, 4}) * 2.0; }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].view({4, -1}); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].flatten(1); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].transpose(0, 2).reshape({-1}); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].permute({2, 0, 1}).contiguous(); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].narrow(2, 1, 2); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].slice(2, 0, 4, 3); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].select(1, -1); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].unsqueeze(1).squeeze(1).squeeze(); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].clone(); }, {a});
  Tensor b = leaf({3, 1}, 22);
  REQUIRE_GRADCHECK([](const V& v) { return v[0].expand({2, 3, 5}); }, {b});
  REQUIRE_GRADCHECK([](const V& v) { return cat({v[0], v[1].sum(0).reshape({1, 3, 4}), v[0]}, 0); },
                    {a, leaf({2, 3, 4}, 23)});
}

TEST_CASE("gradcheck: elementwise ops on non-contiguous inputs", "[gradcheck]") {
  Tensor a = leaf({4, 3}, 24), b = leaf({3, 4}, 25);
  // a.t() is (3,4) with strides (1,3); b.slice steps over columns; expand has stride 0.
  REQUIRE_GRADCHECK([](const V& v) { return v[0].t() * v[1]; }, {a, b});
  REQUIRE_GRADCHECK([](const V& v) { return (v[0].t() + v[1]).tanh(); }, {a, b});
  REQUIRE_GRADCHECK([](const V& v) { return v[1].slice(1, 0, 4, 2).exp(); }, {a, b});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].t().sum(0); }, {a, b});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].t().max(1); }, {a, b});
  REQUIRE_GRADCHECK([](const V& v) { return v[0].select(1, 0).expand({3, 4}) * v[1]; }, {a, b});
}

TEST_CASE("gradcheck: a composite (a two-layer MLP with log_softmax loss)", "[gradcheck]") {
  Tensor x = leaf({5, 4}, 26), w1 = leaf({4, 6}, 27), b1 = leaf({6}, 28), w2 = leaf({6, 3}, 29);
  Tensor labels = tensor(std::vector<int64_t>{0, 2, 1, 1, 0}, {5, 1});
  auto f = [labels](const V& v) {
    Tensor h = (v[0].matmul(v[1]) + v[2]).relu();
    Tensor logp = h.matmul(v[3]).log_softmax(1);
    return -logp.gather(1, labels).mean();
  };
  REQUIRE_GRADCHECK(f, {x, w1, b1, w2});
}

TEST_CASE("gradcheck catches a wrong gradient", "[gradcheck]") {
  // A deliberately wrong backward: the tape says d/dx (2x) = 3.
  Tensor a = leaf({3}, 30);
  auto bad = [](const V& v) {
    Tensor out = raw::binary_scalar(raw::Binary::Mul, v[0], 2.0);
    if (!autograd::needs_recording(v[0])) return out;
    return autograd::record("bad_double", out, {v[0]}, {}, [](const autograd::BackwardArgs& g) -> std::vector<Tensor> {
      return {raw::binary_scalar(raw::Binary::Mul, g.grad, 3.0)};
    });
  };
  auto r = autograd::gradcheck(bad, {a});
  REQUIRE_FALSE(r.ok);
  REQUIRE_THAT(r.report, Catch::Contains("analytic 3") && Catch::Contains("numeric 2"));
}
