// stack, split, chunk, clamp, masked_fill, masked_select, topk, cumsum and the sum of a
// bool tensor: values against hand-computed results, float64 gradchecks, NaN cases,
// error messages, and a [cuda] check of each against the CPU.
#include <cmath>
#include <limits>

#include "../helpers.h"

using namespace weft;
using Catch::Matchers::Contains;
using test::leaf;
using test::vec;
using V = std::vector<Tensor>;

namespace {
const double kNaN = std::numeric_limits<double>::quiet_NaN();

Tensor vals(const std::vector<double>& v, const Shape& shape, bool requires_grad = false) {
  return tensor(v, shape, {.dtype = kFloat64, .requires_grad = requires_grad});
}
Tensor mask_of(const std::vector<double>& v, const Shape& shape) { return vals(v, shape) > 0.5; }

// Equal element by element, NaN matching NaN.
bool same(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  return true;
}
}  // namespace

TEST_CASE("stack: values, negative dims, gradients, errors", "[ops_extra][stack]") {
  const Tensor a = vals({1, 2, 3, 4, 5, 6}, {2, 3}), b = vals({7, 8, 9, 10, 11, 12}, {2, 3});
  const Tensor s0 = stack({a, b}, 0);
  CHECK(s0.shape() == Shape{2, 2, 3});
  CHECK(vec(s0) == std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  const Tensor s1 = stack({a, b}, 1);
  CHECK(s1.shape() == Shape{2, 2, 3});
  CHECK(vec(s1) == std::vector<double>{1, 2, 3, 7, 8, 9, 4, 5, 6, 10, 11, 12});
  const Tensor sl = stack({a, b}, -1);
  CHECK(sl.shape() == Shape{2, 3, 2});
  CHECK(vec(sl) == std::vector<double>{1, 7, 2, 8, 3, 9, 4, 10, 5, 11, 6, 12});
  CHECK(stack({a, b}, -3).shape() == Shape{2, 2, 3});
  CHECK(stack({scalar_tensor(1.0), scalar_tensor(2.0)}).shape() == Shape{2});

  REQUIRE_GRADCHECK([](const V& v) { return stack({v[0], v[1], v[0]}, 1); }, {leaf({2, 3}, 1), leaf({2, 3}, 2)});
  REQUIRE_GRADCHECK([](const V& v) { return stack({v[0].t(), v[1]}, -1); }, {leaf({3, 2}, 3), leaf({2, 3}, 4)});

  REQUIRE_THROWS_WITH(stack({a, vals({1, 2, 3}, {3})}), Contains("stack") && Contains("(2,3)") && Contains("(3)"));
  REQUIRE_THROWS_WITH(stack({a, b}, 3), Contains("stack") && Contains("dim 3"));
  REQUIRE_THROWS_WITH(stack({}), Contains("stack"));
}

TEST_CASE("split and chunk: views, sizes, gradients, errors", "[ops_extra][split]") {
  const Tensor a = arange(0, 10, 1, kFloat64).reshape({2, 5});
  auto parts = split(a, 2, 1);
  REQUIRE(parts.size() == 3);
  CHECK(parts[0].shape() == Shape{2, 2});
  CHECK(parts[2].shape() == Shape{2, 1});
  CHECK(vec(parts[1]) == std::vector<double>{2, 3, 7, 8});
  CHECK(vec(parts[2]) == std::vector<double>{4, 9});
  CHECK(parts[1].storage() == a.storage());  // views, like narrow

  auto sized = split(a, std::vector<int64_t>{1, 4}, -1);
  REQUIRE(sized.size() == 2);
  CHECK(vec(sized[0]) == std::vector<double>{0, 5});
  CHECK(vec(sized[1]) == std::vector<double>{1, 2, 3, 4, 6, 7, 8, 9});
  CHECK(sized[1].storage() == a.storage());

  auto ch = chunk(arange(0, 5, 1, kFloat64), 4);  // ceil(5/4) = 2: sizes 2, 2, 1
  REQUIRE(ch.size() == 3);
  CHECK(vec(ch[2]) == std::vector<double>{4});
  CHECK(chunk(a, 2, 0).size() == 2);
  CHECK(chunk(a, 10, 1).size() == 5);
  CHECK(chunk(zeros({0, 3}), 3, 0).size() == 3);  // PyTorch: `chunks` empty pieces

  REQUIRE_GRADCHECK([](const V& v) { return split(v[0], 2, 1)[1] * split(v[0], 2, 1)[2]; }, {leaf({3, 5}, 5)});
  REQUIRE_GRADCHECK([](const V& v) { return split(v[0], {3, 1, 1}, 1)[0].exp(); }, {leaf({2, 5}, 6)});
  REQUIRE_GRADCHECK([](const V& v) { return chunk(v[0].t(), 3, 0)[1]; }, {leaf({4, 5}, 7)});

  REQUIRE_THROWS_WITH(split(a, std::vector<int64_t>{2, 2}, 1),
                      Contains("split") && Contains("(2,2)") && Contains("(2,5)"));
  REQUIRE_THROWS_WITH(split(a, 0, 1), Contains("split") && Contains("split_size 0"));
  REQUIRE_THROWS_WITH(chunk(a, 0, 1), Contains("chunk") && Contains("0"));
}

TEST_CASE("clamp: values, NaN, boundary gradients", "[ops_extra][clamp]") {
  const Tensor x = vals({-2, -1, 0, 1, 2, kNaN}, {6}, true);
  const Tensor y = clamp(x, -1.0, 1.0);
  CHECK(same(vec(y), {-1, -1, 0, 1, 1, kNaN}));
  y.sum().backward();
  // 1 on the closed interval [min, max] (the bounds themselves included), 0 outside and at NaN
  CHECK(vec(x.grad()) == std::vector<double>{0, 1, 1, 1, 0, 0});

  CHECK(same(vec(clamp(x.detach(), 0.5)), {0.5, 0.5, 0.5, 1, 2, kNaN}));
  CHECK(same(vec(clamp(x.detach(), std::nullopt, 0.5)), {-2, -1, 0, 0.5, 0.5, kNaN}));
  CHECK(same(vec(clamp(x.detach(), 2.0, 1.0)), {1, 1, 1, 1, 1, kNaN}));  // min > max: max
  CHECK(same(vec(clamp(x.detach(), kNaN, 1.0)), {kNaN, kNaN, kNaN, kNaN, kNaN, kNaN}));
  CHECK(vec(clamp(tensor<int64_t>({-5, 0, 5}), -1.0, 1.0)) == std::vector<double>{-1, 0, 1});
  CHECK(clamp(tensor<int64_t>({-5, 0, 5}), -1.0, 1.0).dtype() == kInt64);
  // No silent truncation of a scalar an integer tensor cannot hold.
  REQUIRE_THROWS_WITH(clamp(tensor<int64_t>({-5, 0, 5}), -1.5), Catch::Contains("clamp: min -1.5 does not fit"));
  REQUIRE_THROWS_WITH(masked_fill(tensor<int64_t>({1, 2}), tensor<int64_t>({1, 0}).to(kBool), kNaN),
                      Catch::Contains("masked_fill: value nan does not fit"));
  REQUIRE_THROWS_WITH(topk(full({}, 3.0), 0, 0), Catch::Contains("topk: a 0-d tensor takes k = 1, got k = 0"));

  const Tensor lo = vals({-3, 1.5, 0}, {3}, true);
  clamp(lo, 1.0).sum().backward();
  CHECK(vec(lo.grad()) == std::vector<double>{0, 1, 0});

  REQUIRE_GRADCHECK([](const V& v) { return clamp(v[0], -0.5, 0.5); }, {leaf({4, 5}, 8)});
  REQUIRE_GRADCHECK([](const V& v) { return clamp(v[0].t(), std::nullopt, 0.2); }, {leaf({4, 5}, 9)});
  REQUIRE_THROWS_WITH(clamp(x, std::nullopt, std::nullopt), Contains("clamp") && Contains("min and max"));
}

TEST_CASE("masked_fill: values, broadcasting, gradient, errors", "[ops_extra][masked_fill]") {
  const Tensor x = vals({1, 2, 3, 4, 5, 6}, {2, 3}, true);
  const Tensor m = mask_of({1, 0, 1}, {3});
  const Tensor y = masked_fill(x, m, -7.0);
  CHECK(vec(y) == std::vector<double>{-7, 2, -7, -7, 5, -7});
  y.sum().backward();
  CHECK(vec(x.grad()) == std::vector<double>{0, 1, 0, 0, 1, 0});
  CHECK(same(vec(masked_fill(x.detach(), mask_of({0, 1}, {2, 1}), kNaN)), {1, 2, 3, kNaN, kNaN, kNaN}));
  CHECK(vec(masked_fill(x.detach(), m.reshape({1, 1, 3}).squeeze(0), 0.0)) == std::vector<double>{0, 2, 0, 0, 5, 0});

  const Tensor m2 = mask_of({1, 0, 0, 1, 1, 0, 0, 0, 1, 0}, {5, 2}).t();
  REQUIRE_GRADCHECK([m2](const V& v) { return masked_fill(v[0], m2, 3.0) * v[0]; }, {leaf({2, 5}, 10)});

  REQUIRE_THROWS_WITH(masked_fill(x, vals({1, 0, 1}, {3}), 0.0),
                      Contains("masked_fill") && Contains("bool") && Contains("(3)") && Contains("(2,3)"));
  REQUIRE_THROWS_WITH(masked_fill(x, mask_of({1, 0}, {2}), 0.0),
                      Contains("masked_fill") && Contains("(2)") && Contains("(2,3)"));
  // the mask must broadcast to t's shape, not t to the mask's
  REQUIRE_THROWS_WITH(masked_fill(x, mask_of({1, 0, 1, 1, 0, 1}, {1, 2, 3}), 0.0),
                      Contains("masked_fill") && Contains("(1,2,3)"));
}

TEST_CASE("masked_select: values, broadcasting, gradient, errors", "[ops_extra][masked_select]") {
  const Tensor x = vals({1, 2, 3, 4, 5, 6}, {2, 3}, true);
  const Tensor m = mask_of({0, 1, 1, 1, 0, 0}, {2, 3});
  const Tensor y = masked_select(x, m);
  CHECK(y.shape() == Shape{3});
  CHECK(vec(y) == std::vector<double>{2, 3, 4});
  (y * vals({10, 20, 30}, {3})).sum().backward();
  CHECK(vec(x.grad()) == std::vector<double>{0, 10, 20, 30, 0, 0});

  CHECK(vec(masked_select(x.detach(), mask_of({1, 0, 1}, {3}))) == std::vector<double>{1, 3, 4, 6});
  // the mask may be larger than t: both broadcast
  CHECK(vec(masked_select(vals({1, 2}, {2}), mask_of({1, 0, 0, 1}, {2, 2}))) == std::vector<double>{1, 2});
  CHECK(masked_select(x.detach(), mask_of({0, 0, 0}, {3})).shape() == Shape{0});
  CHECK(same(vec(masked_select(vals({kNaN, 1}, {2}), mask_of({1, 1}, {2}))), {kNaN, 1}));
  CHECK(vec(masked_select(tensor<int64_t>({7, 8, 9}), mask_of({0, 1, 1}, {3}))) == std::vector<double>{8, 9});

  const Tensor mb = mask_of({1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0}, {3, 4});
  REQUIRE_GRADCHECK([mb](const V& v) { return masked_select(v[0], mb); }, {leaf({3, 4}, 11)});
  REQUIRE_GRADCHECK([mb](const V& v) { return masked_select(v[0], mb); }, {leaf({4}, 12)});  // t broadcasts
  REQUIRE_GRADCHECK([mb](const V& v) { return masked_select(v[0].t(), mb); }, {leaf({4, 3}, 13)});

  REQUIRE_THROWS_WITH(masked_select(x, vals({1, 0, 1}, {3})), Contains("masked_select") && Contains("bool"));
  REQUIRE_THROWS_WITH(masked_select(x, mask_of({1, 0}, {2})),
                      Contains("masked_select") && Contains("(2,3)") && Contains("(2)"));
}

TEST_CASE("topk: values, indices, NaN and tie order, gradient, errors", "[ops_extra][topk]") {
  const Tensor x = vals({3, 1, 4, 1, 5, 9, 2, 6}, {2, 4}, true);
  auto [v, i] = topk(x, 2);
  CHECK(v.shape() == Shape{2, 2});
  CHECK(i.dtype() == kInt64);
  CHECK(vec(v) == std::vector<double>{4, 3, 9, 6});
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{2, 0, 1, 3});
  v.sum().backward();
  CHECK(vec(x.grad()) == std::vector<double>{1, 0, 1, 0, 0, 1, 0, 1});

  auto [vs, is] = topk(x.detach(), 3, 1, /*largest=*/false);
  CHECK(vec(vs) == std::vector<double>{1, 1, 3, 2, 5, 6});
  CHECK(is.to_vector<int64_t>() == std::vector<int64_t>{1, 3, 0, 2, 0, 3});  // ties: lower index first
  auto [v0, i0] = topk(x.detach(), 1, 0);
  CHECK(vec(v0) == std::vector<double>{5, 9, 4, 6});
  CHECK(i0.to_vector<int64_t>() == std::vector<int64_t>{1, 1, 0, 1});

  // NaN is larger than everything: first for largest, last for smallest
  const Tensor n = vals({1, kNaN, 3, -kNaN, 2}, {5});
  auto [vn, in] = topk(n, 3);
  CHECK(same(vec(vn), {kNaN, kNaN, 3}));
  CHECK(in.to_vector<int64_t>() == std::vector<int64_t>{1, 3, 2});
  auto [vm, im] = topk(n, 4, 0, false);
  CHECK(same(vec(vm), {1, 2, 3, kNaN}));
  CHECK(im.to_vector<int64_t>() == std::vector<int64_t>{0, 4, 2, 1});
  CHECK(topk(n, 0).first.shape() == Shape{0});
  CHECK(topk(tensor<int64_t>({4, 8, 6}), 2).second.to_vector<int64_t>() == std::vector<int64_t>{1, 2});

  REQUIRE_GRADCHECK([](const V& v) { return topk(v[0], 3, 1).first; }, {leaf({3, 5}, 14)});
  REQUIRE_GRADCHECK([](const V& v) { return topk(v[0].t(), 2, 0, false).first; }, {leaf({3, 5}, 15)});

  REQUIRE_THROWS_WITH(topk(x, 5, 1), Contains("topk") && Contains("k 5") && Contains("size 4"));
  REQUIRE_THROWS_WITH(topk(x, -1, 1), Contains("topk") && Contains("k -1"));
  REQUIRE_THROWS_WITH(topk(x, 1, 2), Contains("topk") && Contains("dim 2"));
}

TEST_CASE("cumsum: values, dtypes, gradient", "[ops_extra][cumsum]") {
  const Tensor x = vals({1, 2, 3, 4, 5, 6}, {2, 3}, true);
  CHECK(vec(cumsum(x, 1)) == std::vector<double>{1, 3, 6, 4, 9, 15});
  CHECK(vec(cumsum(x, 0)) == std::vector<double>{1, 2, 3, 5, 7, 9});
  CHECK(vec(cumsum(x, -1)) == vec(cumsum(x, 1)));
  const Tensor y = cumsum(x, 1);
  (y * vals({1, 10, 100, 1, 1, 1}, {2, 3})).sum().backward();  // reversed cumsum of the weights
  CHECK(vec(x.grad()) == std::vector<double>{111, 110, 100, 3, 2, 1});

  CHECK(same(vec(cumsum(vals({1, kNaN, 2}, {3}), 0)), {1, kNaN, kNaN}));
  const Tensor b = cumsum(mask_of({1, 0, 1, 1}, {4}), 0);
  CHECK(b.dtype() == kInt64);
  CHECK(b.to_vector<int64_t>() == std::vector<int64_t>{1, 1, 2, 3});
  CHECK(cumsum(tensor<int64_t>({5, -2, 4}), 0).to_vector<int64_t>() == std::vector<int64_t>{5, 3, 7});
  CHECK(cumsum(tensor({1.5f, 2.5f}), 0).dtype() == kFloat32);
  CHECK(vec(cumsum(scalar_tensor(4.0, {.dtype = kFloat64}), 0)) == std::vector<double>{4});

  REQUIRE_GRADCHECK([](const V& v) { return cumsum(v[0], 1); }, {leaf({3, 4}, 16)});
  REQUIRE_GRADCHECK([](const V& v) { return cumsum(v[0].transpose(0, 2), 1); }, {leaf({2, 3, 4}, 17)});
  REQUIRE_THROWS_WITH(cumsum(x, 2), Contains("cumsum") && Contains("dim 2"));
}

TEST_CASE("sum of a bool tensor counts in int64", "[ops_extra][sum]") {
  const Tensor m = mask_of({1, 0, 1, 1, 0, 1}, {2, 3});
  const Tensor s = m.sum();
  CHECK(s.dtype() == kInt64);
  CHECK(s.item<int64_t>() == 4);
  const Tensor s1 = m.sum(1);
  CHECK(s1.dtype() == kInt64);
  CHECK(s1.to_vector<int64_t>() == std::vector<int64_t>{2, 2});
  CHECK(raw::reduce(raw::Reduce::Sum, m, {0}, true).to_vector<int64_t>() == std::vector<int64_t>{2, 0, 2});
  CHECK(zeros({0}, {.dtype = kBool}).sum().item<int64_t>() == 0);
}

TEST_CASE("cuda: stack, split, clamp, masks, topk, cumsum and bool sum match the CPU", "[cuda][ops_extra]") {
  if (!cuda::is_available()) {
    WARN("SKIP the CUDA checks of the extra tensor ops: no GPU is visible");
    return;
  }
  const Device gpu = Device::cuda(0);
  for (DType dt : {kFloat32, kFloat64}) {
    INFO("dtype " << dt);
    Generator gen(40);
    Tensor base = randn({5, 7, 6}, {.dtype = dt}, gen);
    // a few NaNs and ties
    base.narrow(0, 1, 1).narrow(1, 2, 1).fill_(kNaN);
    base.narrow(0, 3, 1).narrow(2, 1, 2).fill_(0.25);
    const Tensor x = base.transpose(1, 2);  // non-contiguous
    const Tensor xg = base.to(gpu).transpose(1, 2);
    auto check = [&](const Tensor& want, const Tensor& got) {
      REQUIRE(got.device() == gpu);
      REQUIRE(got.dtype() == want.dtype());
      REQUIRE(got.shape() == want.shape());
      CHECK(same(got.to(kCPU).to(kFloat64).to_vector<double>(), want.to(kFloat64).to_vector<double>()));
    };
    check(stack({x, x * 2.0}, -2), stack({xg, xg * 2.0}, -2));
    check(split(x, 3, 1)[2].contiguous(), split(xg, 3, 1)[2].contiguous());
    check(chunk(x, 4, 2)[1].contiguous(), chunk(xg, 4, 2)[1].contiguous());
    check(clamp(x, -0.5, 0.5), clamp(xg, -0.5, 0.5));
    check(clamp(x, std::nullopt, 0.1), clamp(xg, std::nullopt, 0.1));
    const Tensor m = x > 0.0;
    const Tensor mg = m.to(gpu);
    check(masked_fill(x, m, 3.0), masked_fill(xg, mg, 3.0));
    check(masked_fill(x, m.select(0, 2), -1.0), masked_fill(xg, mg.select(0, 2), -1.0));
    check(masked_select(x, m), masked_select(xg, mg));
    check(masked_select(x, m.select(0, 1)), masked_select(xg, mg.select(0, 1)));
    for (int64_t d : {0, 1, 2})
      for (bool largest : {true, false}) {
        INFO("topk dim " << d << " largest " << largest);
        auto [v, i] = topk(x, 3, d, largest);
        auto [vg, ig] = topk(xg, 3, d, largest);
        check(v, vg);
        check(i, ig);
        check(cumsum(x, d), cumsum(xg, d));
        check(raw::cumsum(x, d, true), raw::cumsum(xg, d, true));
      }
    check(m.sum(), mg.sum());
    check(m.sum(1), mg.sum(1));
    check(cumsum(m, 2), cumsum(mg, 2));

    // gradients
    const Tensor a = base.clone().requires_grad_(), ag = base.to(gpu).requires_grad_();
    const Tensor w = randn({5, 6, 7}, {.dtype = dt}, gen);
    auto loss = [&](const Tensor& t, const Tensor& mask, const Tensor& wt) {
      const Tensor tt = t.transpose(1, 2);
      Tensor r = (clamp(tt, -0.5, 0.5) * wt).sum() + (masked_fill(tt, mask, 0.0) * wt).sum();
      r = r + (cumsum(tt, 1) * wt).sum() + topk(tt, 2, 2).first.sum() + masked_select(tt, mask).sum();
      r = r + (stack(split(tt, 2, 1), 0).sum(0) * wt.narrow(1, 0, 2)).sum();
      return r;
    };
    // the gradients depend on x only through comparisons, so they are finite even at NaN
    loss(a, m, w).backward();
    loss(ag, mg, w.to(gpu)).backward();
    const double tol = dt == kFloat32 ? 1e-5 : 1e-12;
    CHECK(allclose(ag.grad().to(kCPU), a.grad(), tol, tol));
  }
}
