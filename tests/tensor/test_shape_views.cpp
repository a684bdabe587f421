// Views share storage; shapes, strides and offsets come out right; printing is readable.
#include "../helpers.h"

using namespace weft;

TEST_CASE("creation functions", "[tensor]") {
  REQUIRE(zeros({2, 3}).to_vector<float>() == std::vector<float>(6, 0.0f));
  REQUIRE(ones({2}).to_vector<float>() == std::vector<float>{1, 1});
  REQUIRE(full({2}, 7.5).to_vector<float>() == std::vector<float>{7.5, 7.5});
  REQUIRE(arange(0, 5, 2).to_vector<float>() == std::vector<float>{0, 2, 4});
  REQUIRE(arange(4).dtype() == kInt64);
  REQUIRE(arange(4).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3});
  REQUIRE(linspace(0, 1, 5).to_vector<float>() == std::vector<float>{0, 0.25f, 0.5f, 0.75f, 1});
  Tensor t = tensor({1.f, 2.f, 3.f, 4.f, 5.f, 6.f}, {2, 3});
  REQUIRE(t.shape() == Shape{2, 3});
  REQUIRE(t.strides() == Strides{3, 1});
  REQUIRE(t.numel() == 6);
  REQUIRE(t.is_contiguous());
  REQUIRE(scalar_tensor(3.0).dim() == 0);
  REQUIRE(scalar_tensor(3.0).item<float>() == 3.0f);
  REQUIRE(empty({0, 3}).numel() == 0);
}

TEST_CASE("a copied Tensor is a handle to the same data", "[tensor][views]") {
  Tensor a = zeros({3});
  Tensor b = a;
  b.fill_(2.0);
  REQUIRE(a.to_vector<float>() == std::vector<float>{2, 2, 2});
  Tensor c = a.clone();
  c.fill_(5.0);
  REQUIRE(a.to_vector<float>() == std::vector<float>{2, 2, 2});
}

TEST_CASE("transpose, permute and t are views with swapped strides", "[tensor][views]") {
  Tensor a = arange(0, 6).reshape({2, 3});
  Tensor t = a.t();
  REQUIRE(t.shape() == Shape{3, 2});
  REQUIRE(t.strides() == Strides{1, 3});
  REQUIRE_FALSE(t.is_contiguous());
  REQUIRE(t.storage() == a.storage());
  REQUIRE(t.to_vector<float>() == std::vector<float>{0, 3, 1, 4, 2, 5});
  Tensor p = arange(0, 24).reshape({2, 3, 4}).permute({2, 0, 1});
  REQUIRE(p.shape() == Shape{4, 2, 3});
  REQUIRE(p.strides() == Strides{1, 12, 4});
  REQUIRE(p.select(0, 1).select(0, 1).to_vector<float>() == std::vector<float>{13, 17, 21});
  Tensor c = t.contiguous();
  REQUIRE(c.is_contiguous());
  REQUIRE(c.storage() != a.storage());
  REQUIRE(a.contiguous().storage() == a.storage());  // already contiguous: no copy
}

TEST_CASE("slice, narrow and select share storage and offset correctly", "[tensor][views]") {
  Tensor a = arange(0, 12).reshape({3, 4});
  Tensor row = a.select(0, 1);
  REQUIRE(row.shape() == Shape{4});
  REQUIRE(row.offset() == 4);
  REQUIRE(row.to_vector<float>() == std::vector<float>{4, 5, 6, 7});
  Tensor col = a.select(1, -1);
  REQUIRE(col.to_vector<float>() == std::vector<float>{3, 7, 11});
  Tensor s = a.slice(1, 1, 4, 2);
  REQUIRE(s.shape() == Shape{3, 2});
  REQUIRE(s.strides() == Strides{4, 2});
  REQUIRE(s.to_vector<float>() == std::vector<float>{1, 3, 5, 7, 9, 11});
  REQUIRE(a.narrow(0, 1, 2).to_vector<float>() == std::vector<float>{4, 5, 6, 7, 8, 9, 10, 11});
  REQUIRE(a.slice(0, -2, 100).shape() == Shape{2, 4});  // python-style clamping
  // Writing through a view writes the base.
  s.fill_(-1.0);
  REQUIRE(a.select(0, 0).to_vector<float>() == std::vector<float>{0, -1, 2, -1});
  REQUIRE(a[2].to_vector<float>() == std::vector<float>{8, -1, 10, -1});
}

TEST_CASE("reshape is a view when strides allow and a copy otherwise; view refuses", "[tensor][views]") {
  Tensor a = arange(0, 24).reshape({2, 3, 4});
  Tensor v = a.reshape({6, -1});
  REQUIRE(v.shape() == Shape{6, 4});
  REQUIRE(v.storage() == a.storage());
  // Merging dims 0 and 1 of a transposed-last-two tensor is still a view.
  Tensor tl = a.transpose(1, 2);  // (2,4,3) strides (12,1,4)
  Tensor m = a.permute({0, 1, 2}).reshape({2, 12});
  REQUIRE(m.storage() == a.storage());
  Tensor r = tl.reshape({2, 12});  // needs a copy
  REQUIRE(r.storage() != a.storage());
  REQUIRE(r.select(0, 0).narrow(0, 0, 4).to_vector<float>() == std::vector<float>{0, 4, 8, 1});
  REQUIRE_THROWS_WITH(tl.view({2, 12}), Catch::Contains("view") && Catch::Contains("reshape()"));
  // A slice of rows stays viewable.
  REQUIRE(a.narrow(0, 1, 1).view({3, 4}).storage() == a.storage());
  REQUIRE(a.flatten().shape() == Shape{24});
  REQUIRE(a.flatten(1).shape() == Shape{2, 12});
}

TEST_CASE("expand broadcasts with stride 0; squeeze and unsqueeze", "[tensor][views]") {
  Tensor b = tensor({1.f, 2.f, 3.f}, {3, 1});
  Tensor e = b.expand({2, 3, 4});
  REQUIRE(e.shape() == Shape{2, 3, 4});
  REQUIRE(e.strides() == Strides{0, 1, 0});
  REQUIRE(e.select(0, 1).select(0, 2).to_vector<float>() == std::vector<float>(4, 3.0f));
  REQUIRE(b.expand({-1, 5}).shape() == Shape{3, 5});
  REQUIRE(b.unsqueeze(0).shape() == Shape{1, 3, 1});
  REQUIRE(b.unsqueeze(-1).shape() == Shape{3, 1, 1});
  REQUIRE(b.squeeze().shape() == Shape{3});
  REQUIRE(b.squeeze(0).shape() == Shape{3, 1});  // size 3: unchanged
  REQUIRE(b.squeeze(1).shape() == Shape{3});
}

TEST_CASE("copy_ broadcasts and converts dtypes; to(dtype)", "[tensor]") {
  Tensor dst = zeros({2, 3});
  dst.copy_(tensor({1.f, 2.f, 3.f}));
  REQUIRE(dst.to_vector<float>() == std::vector<float>{1, 2, 3, 1, 2, 3});
  dst.t().copy_(arange(0, 6).reshape({3, 2}));  // into a non-contiguous destination
  REQUIRE(dst.to_vector<float>() == std::vector<float>{0, 2, 4, 1, 3, 5});
  Tensor i = tensor({1.7f, -2.2f}).to(kInt64);
  REQUIRE(i.to_vector<int64_t>() == std::vector<int64_t>{1, -2});
  REQUIRE(tensor({1.5f}).to(kFloat64).item<double>() == 1.5);
}

TEST_CASE("logical CPU devices: to() copies, ops refuse to mix them", "[tensor][device]") {
  Tensor a = ones({2});
  Tensor b = a.to(Device("cpu:1"));
  REQUIRE(b.device() == Device::cpu(1));
  REQUIRE(b.storage() != a.storage());
  REQUIRE(b.to_vector<float>() == std::vector<float>{1, 1});
  REQUIRE_THROWS_WITH(a + b, Catch::Contains("add") && Catch::Contains("cpu:0") && Catch::Contains("cpu:1"));
  REQUIRE(Device("cuda:3").index == 3);
  REQUIRE_THROWS_WITH(Device("tpu:0"), Catch::Contains("tpu:0"));
  REQUIRE_THROWS_WITH(Device("cpu:x"), Catch::Contains("bad index"));
}

TEST_CASE("printing", "[tensor][print]") {
  Tensor a = tensor({1.f, -2.5f, 3.f, 4.f}, {2, 2});
  const std::string s = to_string(a);
  REQUIRE(s == "tensor([[ 1.0000, -2.5000],\n        [ 3.0000,  4.0000]], shape=(2,2), dtype=float32)");
  REQUIRE(to_string(arange(3)) == "tensor([0, 1, 2], shape=(3), dtype=int64)");
  const std::string big = to_string(arange(0, 100));
  REQUIRE_THAT(big, Catch::Contains("...") && Catch::Contains("99.0000") && Catch::Contains("shape=(100)"));
  Tensor w = zeros({1}, {.requires_grad = true});
  REQUIRE_THAT(to_string(w), Catch::Contains("requires_grad"));
  std::ostringstream os;
  os << scalar_tensor(2.0);
  REQUIRE(os.str() == "tensor(2.0000, shape=(), dtype=float32)");
}

TEST_CASE("generator: seeded, reproducible, independent of thread count", "[tensor][random]") {
  Generator g1(42), g2(42), g3(43);
  Tensor a = randn({1000}, {}, g1), b = randn({1000}, {}, g2), c = randn({1000}, {}, g3);
  REQUIRE(equal(a, b));
  REQUIRE_FALSE(equal(a, c));
  // Statistics of 100k normals and uniforms.
  Generator g(7);
  Tensor n = randn({100000}, {.dtype = kFloat64}, g);
  REQUIRE(n.mean().item<double>() == Approx(0.0).margin(0.02));
  REQUIRE((n * n).mean().item<double>() == Approx(1.0).margin(0.02));
  Tensor u = rand({100000}, {.dtype = kFloat64}, g);
  REQUIRE(u.min().item<double>() >= 0.0);
  REQUIRE(u.max().item<double>() < 1.0);
  REQUIRE(u.mean().item<double>() == Approx(0.5).margin(0.01));
  Tensor bern = bernoulli({100000}, 0.3, {.dtype = kFloat64}, g);
  REQUIRE(bern.mean().item<double>() == Approx(0.3).margin(0.01));
  // Thread count does not change the stream.
  set_num_threads(1);
  Generator h1(5);
  Tensor s1 = randn({200000}, {}, h1);
  set_num_threads(2);
  Generator h2(5);
  Tensor s2 = randn({200000}, {}, h2);
  REQUIRE(equal(s1, s2));
}

TEST_CASE("randperm is a permutation, reproducible by seed", "[tensor][random]") {
  Generator g(3);
  auto p = randperm(1000, g).to_vector<int64_t>();
  auto sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) REQUIRE(sorted[i] == i);
  Generator g2(3);
  REQUIRE(randperm(1000, g2).to_vector<int64_t>() == p);
  REQUIRE(g.offset() > 0);
}
