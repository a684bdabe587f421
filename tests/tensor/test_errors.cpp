// Bad input gives a weft::Error that names the op and the offending shapes.
#include "../helpers.h"

using namespace weft;

TEST_CASE("matmul errors name both shapes and the dims", "[errors]") {
  REQUIRE_THROWS_WITH(ones({3, 4}).matmul(ones({5, 6})), "matmul: (3,4) @ (5,6): inner dimensions 4 and 5 differ");
  REQUIRE_THROWS_WITH(ones({2, 3, 4}).matmul(ones({3, 4, 2})), Catch::Contains("matmul") && Catch::Contains("(2)") &&
                                                                    Catch::Contains("(3)"));
  REQUIRE_THROWS_WITH(scalar_tensor(1.0).matmul(ones({2})), Catch::Contains("at least 1 dimension"));
  REQUIRE_THROWS_WITH(arange(4).matmul(arange(4)), Catch::Contains("matmul") && Catch::Contains("floating-point"));
}

TEST_CASE("broadcasting errors name the op and both shapes", "[errors]") {
  REQUIRE_THROWS_WITH(ones({2, 3}) + ones({4}), "add: shapes (2,3) and (4) cannot be broadcast (dimension 1: 3 vs 4)");
  REQUIRE_THROWS_WITH(ones({2, 3}) * ones({3, 2}), Catch::StartsWith("mul: shapes (2,3) and (3,2)"));
  REQUIRE_THROWS_WITH(where(ones({2}) > 0.0, ones({3}), ones({2})), Catch::Contains("where"));
}

TEST_CASE("dtype and device mismatches are named", "[errors]") {
  REQUIRE_THROWS_WITH(ones({2}) + ones({2}, {.dtype = kFloat64}),
                      Catch::Contains("add") && Catch::Contains("float32") && Catch::Contains("float64"));
  REQUIRE_THROWS_WITH(ones({2}).log_softmax(0).gather(0, ones({2})), Catch::Contains("gather") && Catch::Contains("int64"));
  REQUIRE_THROWS_WITH(where(ones({2}), ones({2}), ones({2})), Catch::Contains("where") && Catch::Contains("bool"));
}

TEST_CASE("dim errors", "[errors]") {
  REQUIRE_THROWS_WITH(ones({2, 3}).sum(2), "sum: dim 2 is out of range for a tensor with 2 dimensions");
  REQUIRE_THROWS_WITH(ones({2, 3}).softmax(-3), Catch::Contains("softmax") && Catch::Contains("-3"));
  REQUIRE_THROWS_WITH(ones({2, 3}).sum({1, 1}), Catch::Contains("appears twice"));
  REQUIRE_THROWS_WITH(ones({2, 3}).permute({0, 0}), Catch::Contains("permute") && Catch::Contains("twice"));
  REQUIRE_THROWS_WITH(ones({2, 3}).transpose(0, 5), Catch::Contains("transpose"));
  REQUIRE_THROWS_WITH(ones({2, 3}).select(1, 3), "select: index 3 is out of range for dim 1 of shape (2,3)");
  REQUIRE_THROWS_WITH(ones({2, 3}).narrow(1, 2, 2), Catch::Contains("narrow") && Catch::Contains("(2,3)"));
}

TEST_CASE("shape errors in views", "[errors]") {
  REQUIRE_THROWS_WITH(ones({2, 3}).reshape({4, 2}), "reshape: cannot reshape (2,3) (6 elements) to (4,2) (8 elements)");
  REQUIRE_THROWS_WITH(ones({2, 3}).reshape({-1, -1}), Catch::Contains("only one dimension can be -1"));
  REQUIRE_THROWS_WITH(ones({2, 3}).reshape({4, -1}), Catch::Contains("(2,3)") && Catch::Contains("(4,-1)"));
  REQUIRE_THROWS_WITH(ones({2, 3}).expand({2, 4}), "expand: cannot expand shape (2,3) to (2,4) (dim 1: 3 vs 4)");
  REQUIRE_THROWS_WITH(ones({2, 3}).expand({3}), Catch::Contains("fewer dims"));
  REQUIRE_THROWS_WITH(cat({ones({2, 3}), ones({2, 4})}, 0), Catch::Contains("cat") && Catch::Contains("(2,4)"));
  REQUIRE_THROWS_WITH(empty({2, -1}), Catch::Contains("negative"));
  REQUIRE_THROWS_WITH(tensor({1.f, 2.f, 3.f}, {2, 2}), Catch::Contains("3 values do not fill shape (2,2)"));
  REQUIRE_THROWS_WITH(ones({1, 2, 3, 4, 5, 6, 7, 8}).unsqueeze(0), Catch::Contains("at most 8"));
}

TEST_CASE("indexing errors", "[errors]") {
  Tensor a = ones({3, 4});
  REQUIRE_THROWS_WITH(a.gather(1, tensor(std::vector<int64_t>{4}, {1, 1})),
                      "gather: index 4 is out of range for dim 1 of size 4");
  REQUIRE_THROWS_WITH(a.gather(1, tensor(std::vector<int64_t>{0}, {1})), Catch::Contains("same number of dims"));
  REQUIRE_THROWS_WITH(a.index_select(0, tensor(std::vector<int64_t>{3})), Catch::Contains("index_select") &&
                                                                              Catch::Contains("out of range"));
  REQUIRE_THROWS_WITH(a.index_select(0, tensor(std::vector<int64_t>{0, 1}, {2, 1})), Catch::Contains("1-D"));
}

TEST_CASE("item, data and copy_ errors", "[errors]") {
  REQUIRE_THROWS_WITH(ones({2}).item<float>(), Catch::Contains("item") && Catch::Contains("(2)"));
  REQUIRE_THROWS_WITH(ones({2}).data<double>(), Catch::Contains("float32") && Catch::Contains("float64"));
  Tensor d = zeros({2, 3});
  REQUIRE_THROWS_WITH(d.copy_(ones({3, 2})), Catch::Contains("copy_") && Catch::Contains("(3,2)"));
  REQUIRE_THROWS_WITH(Tensor().sum(), Catch::Contains("undefined"));
}

TEST_CASE("CUDA entry points are clear errors without a GPU", "[errors][cuda]") {
  if (cuda::is_available()) {
    WARN("a GPU is present: the no-GPU error paths are not exercised here");
    return;
  }
  REQUIRE(cuda::device_count() == 0);
  const std::string want = cuda::built_with_cuda() ? "no CUDA device" : "built without CUDA";
  REQUIRE_THROWS_WITH(ones({2}).to(Device("cuda:0")), Catch::Contains(want));
  REQUIRE_THROWS_WITH(zeros({2}, {.device = Device("cuda:0")}), Catch::Contains(want));
}

// Issue 17: every product of sizes is checked. Before, these allocated 16 bytes and wrote
// past them, counted 0 or a negative number of elements, or summed 4 where the true sum
// is 4 * (2^62 + 1).
TEST_CASE("shapes too large for an int64 are errors, not wrong counts", "[errors][shape]") {
  const int64_t big = (int64_t(1) << 62) + 1;
  REQUIRE_THROWS_WITH(zeros({big, 4}), Catch::Contains("more elements than an int64") && Catch::Contains("(4611686018427387905,4)"));
  REQUIRE_THROWS_WITH(zeros({int64_t(1) << 32, int64_t(1) << 32}), Catch::Contains("more elements than an int64"));
  REQUIRE_THROWS_WITH(zeros({3, int64_t(1) << 62}), Catch::Contains("more elements than an int64"));
  REQUIRE_THROWS_WITH(ones({1, 4}).expand({big, 4}).sum(), Catch::Contains("more elements than an int64"));
  REQUIRE_THROWS_WITH(zeros({int64_t(1) << 61}, {.dtype = kFloat64}), Catch::Contains("more bytes than an int64"));
  REQUIRE_THROWS_WITH(arange(0, 1e300), Catch::Contains("arange") && Catch::Contains("too many"));
  // A zero size makes any shape empty, however large the others.
  CHECK(Shape{0, int64_t(1) << 62, int64_t(1) << 62}.numel() == 0);
  CHECK(zeros({0, int64_t(1) << 40}).numel() == 0);
}

// Issue 17: base.expand(...).add_(1) used to add 1 to each base element once per
// broadcast row (4 here).
TEST_CASE("in-place writes into an expanded view are refused", "[errors][inplace]") {
  Tensor base = zeros({1, 3});
  Tensor view = base.expand({4, 3});
  REQUIRE_THROWS_WITH(view.add_(ones({4, 3})), Catch::Contains("add") && Catch::Contains("expanded view"));
  REQUIRE_THROWS_WITH(view.mul_(2.0), Catch::Contains("expanded view"));
  REQUIRE_THROWS_WITH(view.fill_(1.0), Catch::Contains("fill_") && Catch::Contains("(4,3)"));
  REQUIRE_THROWS_WITH(view.copy_(ones({4, 3})), Catch::Contains("copy_") && Catch::Contains("expanded view"));
  CHECK(base.sum().item<float>() == 0);  // nothing was written
  // A size-1 dim with stride 0 shares nothing: writing it is fine.
  Tensor one = zeros({3}).unsqueeze(0).expand({1, 3});
  one.add_(ones({1, 3}));
  CHECK(one.sum().item<float>() == 3);
}
