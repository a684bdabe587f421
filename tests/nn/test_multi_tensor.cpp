// Modules taking and returning several tensors (nn/module.h, forward_many): which call
// picks which overload, the defaults between forward and forward_many, a transformer
// block over (x, mask) and a model returning (logits, aux_loss), gradchecks through
// them, Sequential chaining lists, ShardedSequential moving lists, and the errors.
#include <type_traits>

#include "../helpers.h"
#include "multi_tensor_models.h"
#include "parallel/pipeline/shard.h"

using namespace weft;
using Catch::Matchers::Contains;
using test::MaskedBlock;
using V = std::vector<Tensor>;

namespace {

// x -> (x, 2x): one tensor in, two out.
struct Twice : nn::Module {
  nn::Tensors forward_many(const nn::Tensors& in) override {
    expect_inputs(in, 1, "(x)");
    return {in[0], in[0] * 2.0};
  }
};

// (a, b) -> a + b: two in, one out.
struct Add : nn::Module {
  nn::Tensors forward_many(const nn::Tensors& in) override {
    expect_inputs(in, 2, "(a, b)");
    return {in[0] + in[1]};
  }
};

// Overrides neither forward nor forward_many.
struct Nothing : nn::Module {};

// A float64 copy of the block's batch: x (2, 4, 8) requiring grad, and a mask.
V block_inputs(bool float_mask) {
  const auto b = test::masked_batch(2, 3, float_mask);
  Generator gen(9);
  Tensor x = randn({2, test::kSeqLen, test::kSeqDim}, {.dtype = kFloat64, .requires_grad = true}, gen);
  return {x, float_mask ? b.mask.to(kFloat64) : b.mask};
}

}  // namespace

TEST_CASE("m({x, mask}) picks the list overload, m(x) and m({x}) the one-tensor one", "[nn][multi]") {
  using M = nn::Module&;
  static_assert(std::is_same_v<decltype(std::declval<M>()(std::declval<Tensor>())), Tensor>);
  static_assert(std::is_same_v<decltype(std::declval<M>()({std::declval<Tensor>(), std::declval<Tensor>()})),
                               nn::Tensors>);
  static_assert(std::is_same_v<decltype(std::declval<M>()({std::declval<Tensor>()})), Tensor>);  // the header says so
  static_assert(std::is_same_v<decltype(std::declval<M>()(nn::Tensors{std::declval<Tensor>()})), nn::Tensors>);

  // The defaults meet: a one-tensor layer takes a list of one, a list module maps one to one.
  nn::Linear fc(3, 2);
  const Tensor x = ones({4, 3});
  const nn::Tensors out = fc(nn::Tensors{x});
  REQUIRE(out.size() == 1);
  CHECK(equal(out[0], fc(x)));
  struct Double : nn::Module {
    nn::Tensors forward_many(const nn::Tensors& in) override { return {in.at(0) * 2.0}; }
  } twice;
  CHECK(equal(twice(x), x * 2.0));
}

TEST_CASE("wrong tensor counts and missing forwards fail with clear messages", "[nn][multi]") {
  nn::Linear fc(3, 2);
  const Tensor x = ones({4, 3});
  REQUIRE_THROWS_AS(fc({x, x}), nn::TensorCountError);
  REQUIRE_THROWS_WITH(fc({x, x}), Contains("Linear: given 2 tensors, but it takes one"));
  Twice two;
  REQUIRE_THROWS_WITH(two(x), Contains("Twice: forward(x) returns one tensor, but its forward_many returned 2 "
                                       "tensors"));
  Add add;
  REQUIRE_THROWS_WITH(add(x), Contains("Add: takes 2 tensors (a, b), given 1"));
  MaskedBlock block(8, 2);
  REQUIRE_THROWS_WITH(block(x), Contains("MaskedBlock: takes 2 tensors (x, mask), given 1"));
  // Not an endless recursion between the two defaults.
  Nothing nothing;
  REQUIRE_THROWS_WITH(nothing(x), Contains("Nothing overrides neither forward(const Tensor&) nor forward_many"));
  REQUIRE_THROWS_WITH(nothing(nn::Tensors{x}), Contains("Nothing overrides neither"));
  REQUIRE_THROWS_WITH(nothing({x, x}), Contains("Nothing: given 2 tensors"));
  // Nested, the guard is per module: a child that defines nothing fails, its parent works.
  struct Parent : nn::Module {
    Nothing child;
    nn::Tensors forward_many(const nn::Tensors& in) override { return {child(in.at(0))}; }
  } parent;
  REQUIRE_THROWS_WITH(parent(x), Contains("Nothing overrides neither"));
}

TEST_CASE("a pre-norm transformer block over (x, mask) returns (y, mask) and gradchecks", "[nn][multi][gradcheck]") {
  for (bool float_mask : {false, true}) {
    INFO((float_mask ? "float mask" : "bool mask"));
    manual_seed(4);
    MaskedBlock block(test::kSeqDim, test::kSeqHeads);
    block.to(kFloat64);
    const V in = block_inputs(float_mask);
    const nn::Tensors out = block({in[0], in[1]});
    REQUIRE(out.size() == 2);
    CHECK(out[0].shape() == in[0].shape());
    CHECK(out[1].is_same(in[1]));  // the mask passes through
    // The mask takes effect: sample 1 sees only key 0, so changing its last position
    // changes nothing at its first.
    Tensor x2 = in[0].detach().clone();
    {
      autograd::NoGradGuard no_grad;
      x2.narrow(0, 1, 1).narrow(1, test::kSeqLen - 1, 1).fill_(5.0);
    }
    const Tensor y2 = block({x2, in[1]})[0];
    CHECK(equal(y2.narrow(0, 1, 1).narrow(1, 0, 1), out[0].detach().narrow(0, 1, 1).narrow(1, 0, 1)));
    CHECK(!equal(y2.narrow(0, 1, 1), out[0].detach().narrow(0, 1, 1)));

    V inputs = {in[0]};
    for (const Tensor& p : block.parameters()) inputs.push_back(p);
    REQUIRE_GRADCHECK([&](const V&) { return block({in[0], in[1]})[0]; }, inputs);
  }
}

TEST_CASE("a model returning (logits, aux_loss): values and gradcheck through both", "[nn][multi][gradcheck]") {
  auto model = test::make_masked_model();
  model->to(kFloat64);
  const auto b = test::masked_batch(3, 2);
  const Tensor x = b.x.to(kFloat64).requires_grad_(true);
  const nn::Tensors out = (*model)({x, b.mask});
  REQUIRE(out.size() == 2);
  CHECK(out[0].shape() == Shape{3, test::kSeqClasses});
  CHECK(out[1].dim() == 0);
  CHECK(out[1].item<double>() > 0);  // two tallies of 0.01 mean(x^2)

  V inputs = {x};
  for (const Tensor& p : model->parameters()) inputs.push_back(p);
  REQUIRE_GRADCHECK([&](const V&) {
    const nn::Tensors o = (*model)({x, b.mask});
    return o[0].sum() + o[1] * 10.0;
  }, inputs);
}

TEST_CASE("Sequential chains lists of tensors through its children", "[nn][multi]") {
  manual_seed(1);
  auto lift = std::make_shared<test::OnFirst>(std::make_shared<nn::Linear>(test::kSeqIn, test::kSeqDim));
  auto b1 = std::make_shared<MaskedBlock>(test::kSeqDim, test::kSeqHeads);
  auto b2 = std::make_shared<MaskedBlock>(test::kSeqDim, test::kSeqHeads);
  nn::Sequential seq(lift, b1, b2);
  const auto b = test::masked_batch(3, 1);
  const nn::Tensors got = seq({b.x, b.mask});
  const nn::Tensors want = (*b2)((*b1)((*lift)({b.x, b.mask})));
  REQUIRE(got.size() == 2);
  CHECK(equal(got[0], want[0]));
  CHECK(got[1].is_same(b.mask));

  // One tensor in and one out, lists in between: x -> (x, 2x) -> a + b.
  nn::Sequential fan(std::make_shared<Twice>(), std::make_shared<Add>(), std::make_shared<nn::ReLU>());
  const Tensor x = tensor({-1.f, 2.f});
  CHECK(equal(fan(x), (x * 3.0).relu()));

  // A child given the wrong count is named by its index and type, through nesting.
  nn::Sequential wrong(lift, b1, std::make_shared<nn::Linear>(test::kSeqDim, 2));
  REQUIRE_THROWS_AS(wrong({b.x, b.mask}), nn::TensorCountError);
  REQUIRE_THROWS_WITH(wrong({b.x, b.mask}), Contains("Sequential layer 2 (Linear): Linear: given 2 tensors"));
  nn::Sequential outer(std::make_shared<nn::ReLU>(), std::make_shared<nn::Sequential>(std::make_shared<Add>()));
  REQUIRE_THROWS_WITH(outer(x), Contains("Sequential layer 1 (Sequential): Sequential layer 0 (Add): Add: takes 2 "
                                         "tensors (a, b), given 1"));
  nn::Sequential two_out(std::make_shared<nn::ReLU>(), std::make_shared<Twice>());
  REQUIRE_THROWS_WITH(two_out(x), Contains("Sequential: forward(x) returns one tensor, but its last layer (1, Twice) "
                                           "returned 2"));
  CHECK(two_out(nn::Tensors{x}).size() == 2);
}

TEST_CASE("shard() cuts a Sequential of list-passing layers; values and gradients as unsharded", "[nn][multi][shard]") {
  auto ref = test::make_masked_model();
  auto sharded = parallel::shard(std::dynamic_pointer_cast<nn::Sequential>(ref->clone(kCPU)),
                                 {Device::cpu(0), Device::cpu(1)});
  REQUIRE(sharded->num_stages() == 2);
  const auto b = test::masked_batch(4, 6);
  const nn::Tensors want = (*ref)({b.x, b.mask});
  const nn::Tensors got = (*sharded)({b.x, b.mask});
  REQUIRE(got.size() == 2);
  CHECK(got[0].device() == Device::cpu(1));
  CHECK(equal(got[0].to(kCPU), want[0]));
  CHECK(equal(got[1].to(kCPU), want[1]));
  test::ce_plus_aux(want, b.y).backward();
  test::ce_plus_aux(got, b.y.to(Device::cpu(1))).backward();
  const auto pr = ref->named_parameters(), ps = sharded->named_parameters();
  REQUIRE(pr.size() == ps.size());
  for (size_t i = 0; i < pr.size(); ++i) {
    INFO(pr[i].first);
    CHECK(pr[i].first == ps[i].first);
    CHECK(equal(pr[i].second.grad(), ps[i].second.grad().to(kCPU)));
  }
  // One tensor in and out, through the stages' lists: Module's forward(x) wants one back.
  REQUIRE_THROWS_WITH((*sharded)(b.x), Contains("MaskedBlock: takes 2 tensors (x, mask), given 1"));
}
