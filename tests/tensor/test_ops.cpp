// Forward results: golden values, broadcasting, non-contiguous inputs, thread counts.
#include <cmath>

#include "../helpers.h"

using namespace weft;
using test::vec;

TEST_CASE("elementwise golden values", "[ops]") {
  Tensor a = tensor({1.f, 4.f, 9.f}), b = tensor({2.f, 2.f, 3.f});
  REQUIRE((a + b).to_vector<float>() == std::vector<float>{3, 6, 12});
  REQUIRE((a - b).to_vector<float>() == std::vector<float>{-1, 2, 6});
  REQUIRE((a * b).to_vector<float>() == std::vector<float>{2, 8, 27});
  REQUIRE((a / b).to_vector<float>() == std::vector<float>{0.5, 2, 3});
  REQUIRE(a.sqrt().to_vector<float>() == std::vector<float>{1, 2, 3});
  REQUIRE(a.pow(0.5).to_vector<float>() == std::vector<float>{1, 2, 3});
  REQUIRE(b.pow(b).to_vector<float>() == std::vector<float>{4, 4, 27});
  REQUIRE((-a).abs().to_vector<float>() == std::vector<float>{1, 4, 9});
  REQUIRE(tensor({-1.f, 0.f, 2.f}).relu().to_vector<float>() == std::vector<float>{0, 0, 2});
  REQUIRE(tensor({0.f}).sigmoid().item<float>() == 0.5f);
  REQUIRE(tensor({0.f}).tanh().item<float>() == 0.0f);
  REQUIRE(tensor({0.f}).exp().item<float>() == 1.0f);
  REQUIRE(tensor({1.f}).log().item<float>() == 0.0f);
  REQUIRE((10.0 - a).to_vector<float>() == std::vector<float>{9, 6, 1});
  REQUIRE((36.0 / a).to_vector<float>() == std::vector<float>{36, 9, 4});
  REQUIRE(vec(tensor({2.0}, {1}, {.dtype = kFloat64}).exp()) == std::vector<double>{std::exp(2.0)});
}

TEST_CASE("broadcasting follows numpy rules", "[ops]") {
  Tensor col = tensor({1.f, 2.f}, {2, 1}), row = tensor({10.f, 20.f, 30.f}, {3});
  Tensor s = col + row;
  REQUIRE(s.shape() == Shape{2, 3});
  REQUIRE(s.to_vector<float>() == std::vector<float>{11, 21, 31, 12, 22, 32});
  Tensor three = ones({4, 1, 3}) * tensor({1.f, 2.f}, {2, 1});
  REQUIRE(three.shape() == Shape{4, 2, 3});
  REQUIRE((scalar_tensor(2.0) * row).to_vector<float>() == std::vector<float>{20, 40, 60});
}

TEST_CASE("int64 arithmetic, and integer division by zero is defined", "[ops]") {
  Tensor a = tensor(std::vector<int64_t>{7, -7, 5}), b = tensor(std::vector<int64_t>{2, 2, 0});
  REQUIRE((a + b).to_vector<int64_t>() == std::vector<int64_t>{9, -5, 5});
  REQUIRE((a / b).to_vector<int64_t>() == std::vector<int64_t>{3, -3, 0});
}

TEST_CASE("comparisons and where", "[ops]") {
  Tensor a = tensor({1.f, 2.f, 3.f}), b = tensor({2.f, 2.f, 2.f});
  REQUIRE(a.lt(b).dtype() == kBool);
  REQUIRE(a.lt(b).to_vector<bool>() == std::vector<bool>{true, false, false});
  REQUIRE(a.le(b).to_vector<bool>() == std::vector<bool>{true, true, false});
  REQUIRE(a.gt(b).to_vector<bool>() == std::vector<bool>{false, false, true});
  REQUIRE(a.ge(b).to_vector<bool>() == std::vector<bool>{false, true, true});
  REQUIRE(a.eq(b).to_vector<bool>() == std::vector<bool>{false, true, false});
  REQUIRE(a.ne(b).to_vector<bool>() == std::vector<bool>{true, false, true});
  REQUIRE((a > 1.5).to_vector<bool>() == std::vector<bool>{false, true, true});
  REQUIRE(where(a > 1.5, a, b * 10.0).to_vector<float>() == std::vector<float>{20, 2, 3});
  REQUIRE(where(a > 1.5, a, scalar_tensor(0.0)).to_vector<float>() == std::vector<float>{0, 2, 3});
}

TEST_CASE("reductions: golden values, keepdim, several dims, NaN", "[ops]") {
  Tensor a = arange(0, 24).reshape({2, 3, 4});
  REQUIRE(a.sum().item<float>() == 276);
  REQUIRE(a.sum(0).shape() == Shape{3, 4});
  REQUIRE(a.sum(1, true).shape() == Shape{2, 1, 4});
  REQUIRE(a.sum({0, 2}).to_vector<float>() == std::vector<float>{60, 92, 124});
  REQUIRE(a.sum(-1).select(0, 0).to_vector<float>() == std::vector<float>{6, 22, 38});
  REQUIRE(a.mean().item<float>() == 11.5f);
  REQUIRE(a.mean(2).select(1, 2).to_vector<float>() == std::vector<float>{9.5, 21.5});
  REQUIRE(a.max().item<float>() == 23);
  REQUIRE(a.min(1).select(0, 0).to_vector<float>() == std::vector<float>{0, 1, 2, 3});
  REQUIRE(a.argmax(2).to_vector<int64_t>() == std::vector<int64_t>(6, 3));
  REQUIRE(tensor({3.f, 1.f, 3.f}).argmax(0).item<int64_t>() == 0);  // first of ties
  REQUIRE(tensor({3.f, 1.f, 3.f}).argmin(0, true).shape() == Shape{1});
  REQUIRE(std::isnan(tensor({1.f, NAN, 3.f}).max().item<float>()));
  REQUIRE(tensor({1.f, NAN, 3.f}).argmax(0).item<int64_t>() == 1);
  // Leading-dim sums (the bias-gradient path) agree with the general path.
  Tensor big = randn({300, 70});
  REQUIRE(allclose(big.sum(0), big.t().contiguous().sum(1), 1e-5, 1e-5));
  REQUIRE(allclose(big.mean(0), big.t().contiguous().mean(1), 1e-5, 1e-6));
}

TEST_CASE("matmul agrees with a naive triple loop in every layout", "[ops][matmul]") {
  auto naive = [](const Tensor& a, const Tensor& b) {
    const int64_t n = a.size(0), k = a.size(1), m = b.size(1);
    auto av = vec(a), bv = vec(b);
    std::vector<double> c(n * m, 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < m; ++j)
        for (int64_t p = 0; p < k; ++p) c[i * m + j] += av[i * k + p] * bv[p * m + j];
    return c;
  };
  Generator g(11);
  for (auto [n, k, m] : std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {3, 5, 2}, {64, 33, 17}, {130, 70, 90}}) {
    Tensor a = randn({n, k}, {.dtype = kFloat64}, g), b = randn({k, m}, {.dtype = kFloat64}, g);
    Tensor want = tensor(naive(a, b), {n, m}, {.dtype = kFloat64});
    REQUIRE(allclose(a.matmul(b), want, 1e-10, 1e-10));
    REQUIRE(allclose(a.t().contiguous().t().matmul(b), want, 1e-10, 1e-10));             // column-major a
    REQUIRE(allclose(a.matmul(b.t().contiguous().t()), want, 1e-10, 1e-10));             // column-major b
    Tensor wide = randn({n, 2 * k}, {.dtype = kFloat64}, g);
    Tensor as = wide.slice(1, 0, 2 * k, 2);  // neither layout: copied
    REQUIRE(allclose(as.matmul(b), tensor(naive(as.contiguous(), b), {n, m}, {.dtype = kFloat64}), 1e-10, 1e-10));
  }
  // float32 with threads on a size that splits rows.
  Tensor a = randn({256, 128}), b = randn({128, 64});
  set_num_threads(1);
  Tensor c1 = a.matmul(b);
  set_num_threads(2);
  Tensor c2 = a.matmul(b);
  // Two threads make two GEMM calls of 128 rows where one thread makes one of 256, and
  // OpenBLAS may sum a row in another order for another row count (seen with its Haswell
  // kernels on a Zen 5 CPU): equal up to float32 rounding of 128-term sums, not bit for bit.
  REQUIRE(allclose(c1, c2, 1e-5, 1e-5));
}

// A single row or column whose one stride is not 1 (a column of a matrix) or 0 (a
// broadcast): each must reach the GEMM with its own stride, or be copied.
TEST_CASE("matmul and linear on strided and broadcast rows and columns", "[ops][matmul]") {
  Generator g(12);
  const Tensor m = randn({7, 5}, {}, g), b = randn({7, 3}, {}, g);
  const Tensor col = m.select(1, 2);  // 1-D, stride 5
  REQUIRE(col.strides()[0] == 5);
  CHECK(allclose(col.matmul(b), col.contiguous().matmul(b), 1e-6, 1e-6));          // as a (1,7) row
  CHECK(allclose(b.t().matmul(col), b.t().matmul(col.contiguous()), 1e-6, 1e-6));  // as a (7,1) column
  const Tensor spread = m.t().select(0, 1).unsqueeze(1);                            // (7,1), stride 5
  const Tensor row = m.select(0, 3).unsqueeze(0);                                   // (1,5)
  CHECK(allclose(spread.matmul(row), spread.contiguous().matmul(row), 1e-6, 1e-6));
  const Tensor bcast = tensor({2.f}).expand({5, 1});  // strides (0, 0)
  CHECK(allclose(m.matmul(bcast), m.matmul(bcast.contiguous()), 1e-6, 1e-6));
  const Tensor rows = tensor({1.f, 2.f, 3.f, 4.f, 5.f}).expand({4, 5});  // row stride 0
  CHECK(allclose(rows.matmul(m.t()), rows.contiguous().matmul(m.t()), 1e-6, 1e-6));
  // linear on a strided 1-D input and on a broadcast batch.
  const Tensor lw = randn({4, 7}, {}, g), lb = randn({4}, {}, g);
  CHECK(allclose(raw::linear(col, lw, lb), raw::linear(col.contiguous(), lw, lb), 1e-6, 1e-6));
  const Tensor xb = randn({7}, {}, g).expand({3, 7});
  CHECK(allclose(raw::linear(xb, lw, lb), raw::linear(xb.contiguous(), lw, lb), 1e-6, 1e-6));
}

TEST_CASE("batched and vector matmul shapes", "[ops][matmul]") {
  REQUIRE(ones({5, 2, 3}).matmul(ones({5, 3, 4})).shape() == Shape{5, 2, 4});
  REQUIRE(ones({2, 3}).matmul(ones({7, 3, 4})).shape() == Shape{7, 2, 4});
  REQUIRE(ones({7, 1, 2, 3}).matmul(ones({5, 3, 4})).shape() == Shape{7, 5, 2, 4});
  REQUIRE(ones({3}).matmul(ones({3, 4})).shape() == Shape{4});
  REQUIRE(ones({2, 3}).matmul(ones({3})).shape() == Shape{2});
  REQUIRE(ones({3}).matmul(ones({3})).item<float>() == 3.0f);
  Tensor a = arange(0, 12).reshape({2, 2, 3}), b = arange(0, 6).reshape({3, 2});
  Tensor c = a.matmul(b);
  REQUIRE(c.select(0, 1).to_vector<float>() == a.select(0, 1).matmul(b).to_vector<float>());
  REQUIRE(c.select(0, 0).to_vector<float>() == std::vector<float>{10, 13, 28, 40});
}

TEST_CASE("softmax and log_softmax", "[ops]") {
  Tensor a = tensor({1.f, 2.f, 3.f, 1000.f, 1000.f, 1000.f}, {2, 3});
  Tensor s = a.softmax(1);
  REQUIRE(s.select(0, 0).to_vector<float>()[2] == Approx(0.66524096f));
  REQUIRE(s.select(0, 1).to_vector<float>()[0] == Approx(1.0f / 3));  // no overflow at 1000
  REQUIRE(allclose(s.sum(1), ones({2}), 1e-6, 1e-6));
  REQUIRE(allclose(a.log_softmax(1).exp(), s, 1e-5, 1e-6));
  Tensor b = randn({4, 5, 6});
  REQUIRE(allclose(b.softmax(0).sum(0), ones({5, 6}), 1e-5, 1e-5));
  REQUIRE(allclose(b.transpose(0, 2).softmax(1), b.softmax(1).transpose(0, 2), 1e-6, 1e-7));
}

TEST_CASE("gather and index_select", "[ops]") {
  Tensor a = arange(0, 12).reshape({3, 4});
  Tensor idx = tensor(std::vector<int64_t>{3, 0, 1, 1, 2, 2}, {3, 2});
  REQUIRE(a.gather(1, idx).to_vector<float>() == std::vector<float>{3, 0, 5, 5, 10, 10});
  REQUIRE(a.index_select(0, tensor(std::vector<int64_t>{2, 0})).to_vector<float>() ==
          std::vector<float>{8, 9, 10, 11, 0, 1, 2, 3});
  REQUIRE(a.index_select(1, tensor(std::vector<int64_t>{-1})).to_vector<float>() == std::vector<float>{3, 7, 11});
  REQUIRE(a.t().gather(0, tensor(std::vector<int64_t>{1, 2, 0}, {1, 3})).to_vector<float>() ==
          std::vector<float>{1, 6, 8});
}

TEST_CASE("non-contiguous inputs give the same results as contiguous copies", "[ops][strides]") {
  Generator g(3);
  Tensor base = randn({6, 8}, {}, g);
  std::vector<Tensor> views = {base.t(), base.slice(1, 1, 8, 2).t(), base.select(0, 2).expand({5, 8}),
                               base.reshape({2, 3, 8}).permute({2, 0, 1})};
  for (const Tensor& v : views) {
    Tensor c = v.contiguous();
    REQUIRE_FALSE(v.is_contiguous());
    REQUIRE(equal(v.exp(), c.exp()));
    REQUIRE(equal(v * 2.0 + v.abs(), c * 2.0 + c.abs()));
    REQUIRE(equal(v.relu(), c.relu()));
    REQUIRE(allclose(v.sum(0), c.sum(0), 1e-6, 1e-6));
    REQUIRE(allclose(v.sum(), c.sum(), 1e-6, 1e-6));
    REQUIRE(equal(v.max(-1), c.max(-1)));
    REQUIRE(equal(v.argmax(0), c.argmax(0)));
    REQUIRE(allclose(v.softmax(-1), c.softmax(-1), 1e-6, 1e-7));
    REQUIRE(equal(v.clone(), c));
    REQUIRE(v.to_vector<float>() == c.to_vector<float>());
  }
}

TEST_CASE("ops give the same results with 1 and 2 threads", "[ops][threads]") {
  Generator g(9);
  Tensor a = randn({512, 300}, {}, g), b = randn({300}, {}, g);
  auto run = [&] { return std::vector<Tensor>{(a * b).tanh(), a.sum(1), a.sum(0), a.t().exp(), a.softmax(1),
                                              a.max(0), a.matmul(a.t())}; };
  set_num_threads(1);
  auto one = run();
  set_num_threads(2);
  REQUIRE(num_threads() == 2);
  auto two = run();
  // The last is a GEMM split by rows: OpenBLAS may order a row's sum differently for a
  // different row count (see the matmul test), so it is equal up to float32 rounding.
  for (size_t i = 0; i < one.size(); ++i) {
    const bool gemm = i + 1 == one.size();  // entries up to ~300, sums of 300 products
    REQUIRE(allclose(one[i], two[i], gemm ? 1e-5 : 1e-6, gemm ? 1e-4 : 1e-6));
  }
}

TEST_CASE("the thread pool runs every index once and forwards exceptions", "[threads]") {
  set_num_threads(2);
  std::vector<int> hits(100000, 0);
  parallel_for(0, 100000, 1000, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) ++hits[i];
  });
  REQUIRE(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
  REQUIRE_THROWS_WITH(parallel_for(0, 100000, 10, [](int64_t b, int64_t) {
                        if (b > 0) throw Error("boom in a worker");
                      }),
                      "boom in a worker");
  REQUIRE_THROWS_WITH(set_num_threads(0), Catch::Contains("at least 1"));
}

TEST_CASE("addmm_ adds a product into its destination", "[ops][matmul]") {
  Generator g(8);
  const Tensor a = randn({5, 3}, {}, g), b = randn({3, 4}, {}, g), c0 = randn({5, 4}, {}, g);
  Tensor c = c0.clone();
  raw::addmm_(c, a, b);
  CHECK(allclose(c, c0 + a.matmul(b), 1e-6, 1e-6));
  Tensor ct = c0.clone();
  raw::addmm_(ct, a.t().contiguous().t(), b.t().contiguous().t());  // column-major operands
  CHECK(allclose(ct, c, 1e-6, 1e-6));
  Tensor cd = c0.to(DType::Float64);
  raw::addmm_(cd, a.to(DType::Float64), b.to(DType::Float64));
  CHECK(allclose(cd.to(DType::Float32), c, 1e-6, 1e-6));
  Tensor z = zeros({5, 4});
  raw::addmm_(z, zeros({5, 0}), zeros({0, 4}));  // an empty sum adds nothing
  CHECK(equal(z, zeros({5, 4})));
  REQUIRE_THROWS_WITH(raw::addmm_(c, b, a), Catch::Contains("addmm_: (5,4) += (3,4) @ (5,3)"));
  REQUIRE_THROWS_WITH(raw::addmm_(zeros({4, 5}).t(), a, b), Catch::Contains("must be contiguous"));
}

// copy_ moves a transposed matrix through tiles (tensor/cpu/copy.cpp): every size around
// the tile and SSE block edges, a row stride wider than the matrix, each element width.
TEST_CASE("copying a transposed matrix gives its transpose exactly", "[ops][copy]") {
  for (DType dt : {DType::Float32, DType::Float64, DType::Int64})
    for (int64_t r : {1, 2, 3, 4, 5, 17, 33, 70})
      for (int64_t c : {2, 4, 7, 16, 31, 65}) {
        const Tensor wide = arange(0, double(r * (c + 3))).reshape({r, c + 3}).to(dt);
        const Tensor m = wide.narrow(1, 1, c);  // (r, c), row stride c + 3, offset 1
        const Tensor t = m.t().contiguous();     // (c, r)
        // t[i][j] = m[j][i] = j * (c + 3) + i + 1
        const Tensor want = (arange(0, double(r)) * double(c + 3)).unsqueeze(0) + (arange(0, double(c)) + 1.0).unsqueeze(1);
        INFO(dtype_name(dt) << " " << r << " x " << c);
        REQUIRE(t.is_contiguous());
        CHECK(equal(t, want.to(dt)));
      }
}
