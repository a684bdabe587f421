// Pruning: masks that hold through training, the methods, and checkpoints with masks.
#include "../helpers.h"

using namespace weft;
namespace prune = weft::prune;

namespace {
std::shared_ptr<nn::Sequential> small_mlp(uint64_t seed = 3) {
  manual_seed(seed);
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(8, 16), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(16, 4)});
}

// `steps` optimizer steps on a fixed synthetic classification stream.
void train_steps(nn::Module& m, optim::Optimizer& opt, int steps, int seed = 0) {
  for (int i = 0; i < steps; ++i) {
    Generator g(1000 + seed + i);
    Tensor x = randn({16, 8}, {}, g);
    Tensor y = tensor(std::vector<int64_t>{0, 1, 2, 3, 0, 1, 2, 3, 3, 2, 1, 0, i % 4, 1, 2, 0});
    opt.zero_grad();
    nn::cross_entropy(m(x), y).backward();
    opt.step();
  }
}

// Every entry of t where mask is 0 is exactly 0.
bool zero_where_pruned(const Tensor& t, const Tensor& mask) {
  const auto v = t.to_vector<float>(), m = mask.to_vector<float>();
  for (size_t i = 0; i < v.size(); ++i)
    if (m[i] == 0.0f && v[i] != 0.0f) return false;
  return true;
}

int64_t count_zeros(const Tensor& t) {
  int64_t n = 0;
  for (float v : t.to_vector<float>()) n += v == 0.0f;
  return n;
}

// Trains densely (so momentum / moments build up), prunes 70% by magnitude, trains on;
// returns the number of pruned weights that are non-zero at the end.
template <class Opt>
void check_masks_hold(Opt& opt, nn::Sequential& model, prune::Pruner& pruner) {
  train_steps(model, opt, 5);
  prune::magnitude(pruner, 0.7);
  pruner.attach(opt);
  train_steps(model, opt, 60, 7);
  for (size_t i = 0; i < pruner.size(); ++i) {
    INFO(pruner.name(i));
    REQUIRE(count_zeros(pruner.mask(i)) == std::llround(0.7 * pruner.weight(i).numel()));
    CHECK(zero_where_pruned(pruner.weight(i), pruner.mask(i)));
    const auto state = opt.state_of(pruner.weight(i));
    REQUIRE(!state.empty());
    for (const Tensor& s : state) CHECK(zero_where_pruned(s, pruner.mask(i)));
  }
}
}  // namespace

TEST_CASE("masks hold through SGD with momentum and weight decay", "[prune]") {
  auto model = small_mlp();
  optim::SGD opt(model->parameters(), {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01});
  prune::Pruner pruner(*model);
  REQUIRE(pruner.size() == 2);
  check_masks_hold(opt, *model, pruner);
}

TEST_CASE("masks hold through AdamW", "[prune]") {
  auto model = small_mlp();
  optim::AdamW opt(model->parameters(), {.lr = 0.01, .weight_decay = 0.1});
  prune::Pruner pruner(*model);
  check_masks_hold(opt, *model, pruner);
}

TEST_CASE("without the optimizer hook, momentum revives pruned weights", "[prune]") {
  // Why attach() exists: the gradient hook alone zeroes dL/dW, but the momentum buffer
  // built before pruning keeps pushing the pruned weights away from zero.
  auto model = small_mlp();
  optim::SGD opt(model->parameters(), {.lr = 0.1, .momentum = 0.9});
  prune::Pruner pruner(*model);
  train_steps(*model, opt, 5);
  prune::magnitude(pruner, 0.7);
  train_steps(*model, opt, 3, 7);  // not attached
  CHECK_FALSE(zero_where_pruned(pruner.weight(0), pruner.mask(0)));
  // Attaching restores the invariant from the next step on.
  pruner.attach(opt);
  train_steps(*model, opt, 1, 20);
  CHECK(zero_where_pruned(pruner.weight(0), pruner.mask(0)));
}

TEST_CASE("the gradient hook masks gradients as backward produces them", "[prune]") {
  auto model = small_mlp();
  prune::Pruner pruner(*model);
  prune::magnitude(pruner, 0.5);
  pruner.capture_dense_grads(true);
  Tensor x = randn({4, 8});
  (*model)(x).pow(2.0).mean().backward();
  const Tensor g = pruner.weight(0).grad();
  CHECK(zero_where_pruned(g, pruner.mask(0)));
  // The captured dense gradient is the unmasked one: equal where kept, non-zero somewhere pruned.
  const Tensor dense = pruner.dense_grad(0);
  CHECK(equal(raw::binary(raw::Binary::Mul, dense, pruner.mask(0)), g));
  CHECK_FALSE(zero_where_pruned(dense, pruner.mask(0)));
}

TEST_CASE("per-layer magnitude pruning keeps the largest weights of each layer", "[prune]") {
  auto lin = std::make_shared<nn::Linear>(4, 2, false);
  lin->weight.detach().copy_(tensor({0.1f, -0.9f, 0.3f, 0.05f, -0.2f, 0.8f, -0.7f, 0.4f}, {2, 4}));
  nn::Sequential model({lin});
  prune::Pruner pruner(model);
  prune::magnitude(pruner, 0.5);
  CHECK(pruner.mask(0).to_vector<float>() == std::vector<float>{0, 1, 0, 0, 0, 1, 1, 1});
  // Masks only shrink: a lower sparsity later changes nothing, a higher one removes more.
  prune::magnitude(pruner, 0.25);
  CHECK(pruner.nonzeros() == 4);
  prune::magnitude(pruner, 0.75);
  CHECK(pruner.mask(0).to_vector<float>() == std::vector<float>{0, 1, 0, 0, 0, 1, 0, 0});
}

TEST_CASE("global magnitude pruning uses one threshold across layers", "[prune]") {
  auto model = small_mlp();
  // Make the second layer's weights large: a global threshold should spare it.
  model->parameters()[2].detach().mul_(10.0);
  prune::Pruner pruner(*model);
  prune::global_magnitude(pruner, 0.6);
  const int64_t total = pruner.numel();
  CHECK(pruner.nonzeros() == total - std::llround(0.6 * total));
  float smallest_kept = 1e30f, largest_pruned = 0;
  for (size_t i = 0; i < pruner.size(); ++i) {
    const auto w = pruner.weight(i).to_vector<float>(), m = pruner.mask(i).to_vector<float>();
    // weights are zero where pruned now; the magnitudes that decided are in a fresh copy below
    for (size_t k = 0; k < w.size(); ++k)
      if (m[k] != 0) smallest_kept = std::min(smallest_kept, std::abs(w[k]));
  }
  // Recompute on an identical model what the pruned magnitudes were.
  auto fresh = small_mlp();
  fresh->parameters()[2].detach().mul_(10.0);
  prune::Pruner ref(*fresh);
  for (size_t i = 0; i < ref.size(); ++i) {
    const auto w = ref.weight(i).to_vector<float>(), m = pruner.mask(i).to_vector<float>();
    for (size_t k = 0; k < w.size(); ++k)
      if (m[k] == 0) largest_pruned = std::max(largest_pruned, std::abs(w[k]));
  }
  CHECK(largest_pruned <= smallest_kept);
  // The scaled-up layer is far less sparse than the other.
  CHECK(pruner.nonzeros(1) > 0.9 * pruner.weight(1).numel());
  CHECK(pruner.nonzeros(0) < 0.4 * pruner.weight(0).numel());
}

TEST_CASE("N:M pruning keeps exactly N of every M consecutive weights, the largest", "[prune]") {
  for (auto [n, m] : {std::pair<int64_t, int64_t>{2, 4}, {1, 4}, {3, 8}}) {
    auto model = small_mlp();
    const Tensor before = raw::clone(model->parameters()[0]);
    prune::Pruner pruner(*model);
    prune::n_m(pruner, n, m);
    for (size_t i = 0; i < pruner.size(); ++i) {
      const auto mask = pruner.mask(i).to_vector<float>();
      for (size_t g = 0; g < mask.size(); g += m) {
        int kept = 0;
        for (int64_t j = 0; j < m; ++j) kept += mask[g + j] != 0;
        REQUIRE(kept == n);
      }
    }
    // In layer 0, every kept weight is at least as large as every pruned one of its group.
    const auto w = before.to_vector<float>(), mask = pruner.mask(0).to_vector<float>();
    for (size_t g = 0; g < w.size(); g += m) {
      float lo = 1e30f, hi = 0;
      for (int64_t j = 0; j < m; ++j) {
        if (mask[g + j] != 0) lo = std::min(lo, std::abs(w[g + j]));
        else hi = std::max(hi, std::abs(w[g + j]));
      }
      REQUIRE(hi <= lo);
    }
    CHECK(pruner.sparsity() == Approx(1.0 - double(n) / double(m)));
  }
  auto model = small_mlp();
  prune::Pruner pruner(*model);
  CHECK_THROWS_WITH(prune::n_m(pruner, 2, 3), Catch::Contains("multiple of 3"));
}

TEST_CASE("random pruning hits the sparsity exactly and depends on the seed", "[prune]") {
  auto a = small_mlp(), b = small_mlp();
  prune::Pruner pa(*a), pb(*b);
  Generator g1(1), g2(2);
  prune::random(pa, 0.8, g1);
  prune::random(pb, 0.8, g2);
  CHECK(pa.nonzeros(0) == 128 - std::llround(0.8 * 128));
  CHECK_FALSE(equal(pa.mask(0), pb.mask(0)));
}

TEST_CASE("ERK densities follow sum(dims)/prod(dims), cap at 1 and meet the sparsity", "[prune]") {
  // The MLP sample's three weights at 90%: by hand, the classifier (256+10)/2560 would
  // need a density above 1 and is kept dense; the other two share the rest with
  // eps = (0.1 * 535040 - 2560) / (1296 + 768) = 24.68.
  const std::vector<Shape> shapes{{512, 784}, {256, 512}, {10, 256}};
  const std::vector<double> d = prune::erk_densities(shapes, 0.9);
  REQUIRE(d.size() == 3);
  CHECK(d[2] == 1.0);
  const double eps = (0.1 * 535040 - 2560) / (1296.0 + 768.0);
  CHECK(d[0] == Approx(eps * 1296 / 401408.0));
  CHECK(d[1] == Approx(eps * 768 / 131072.0));
  CHECK(d[0] * 401408 + d[1] * 131072 + d[2] * 2560 == Approx(0.1 * 535040));
  // A conv weight counts its kernel dims too; sparsity 0 keeps everything.
  for (double x : prune::erk_densities({{8, 4, 3, 3}, {16, 8}}, 0.0)) CHECK(x == 1.0);
  CHECK_THROWS_WITH(prune::erk_densities(shapes, 1.5), Catch::Contains("erk"));
  // Applied: random masks at those densities.
  auto m = small_mlp();
  prune::Pruner pruner(*m);
  Generator g(4);
  prune::erk(pruner, 0.7, g);
  std::vector<Shape> small;
  for (size_t i = 0; i < pruner.size(); ++i) small.push_back(pruner.weight(i).shape());
  const std::vector<double> want = prune::erk_densities(small, 0.7);
  for (size_t i = 0; i < pruner.size(); ++i) {
    INFO("target " << i);
    const int64_t n = pruner.weight(i).numel();
    CHECK(pruner.nonzeros(i) == n - std::llround((1.0 - want[i]) * double(n)));
  }
}

TEST_CASE("structured pruning zeroes whole rows and their biases, by L1 norm", "[prune]") {
  auto model = small_mlp();
  prune::Pruner pruner(*model, {"0.weight"});
  prune::structured(pruner, 0.5, 1);
  const Tensor w = pruner.weight(0), b = model->named_parameters()[1].second;
  const auto norms = prune::row_norms(w, 1).to_vector<double>();
  const auto bias = b.to_vector<float>();
  CHECK(std::count(norms.begin(), norms.end(), 0.0) == 8);
  for (int64_t r = 0; r < 16; ++r) CHECK((norms[r] == 0.0) == (bias[r] == 0.0f));
  CHECK(pruner.is_masked("0.bias"));
}

TEST_CASE("custom masks are checked", "[prune]") {
  auto model = small_mlp();
  prune::Pruner pruner(*model);
  CHECK_THROWS_WITH(pruner.set_mask(0, ones({3, 3})), Catch::Contains("shape"));
  CHECK_THROWS_WITH(pruner.set_mask(0, full({16, 8}, 0.5)), Catch::Contains("only 0 and 1"));
  CHECK_THROWS_WITH(pruner.set_mask("2.nope", ones({4, 16})), Catch::Contains("no parameter '2.nope'"));
  Tensor m = ones({16, 8});
  m[3].zero_();
  pruner.set_mask(0, m);
  CHECK(pruner.nonzeros(0) == 120);
}

TEST_CASE("make_permanent keeps the zeros and drops buffers and hooks", "[prune]") {
  auto model = small_mlp();
  prune::Pruner pruner(*model);
  prune::magnitude(pruner, 0.5);
  CHECK(model->state_dict().size() == 6);  // 4 parameters + 2 masks
  const Tensor mask = raw::clone(pruner.mask(0));
  pruner.make_permanent();
  CHECK(model->state_dict().size() == 4);
  CHECK(zero_where_pruned(pruner.weight(0), mask));
  (*model)(randn({4, 8})).pow(2.0).mean().backward();
  CHECK_FALSE(zero_where_pruned(pruner.weight(0).grad(), mask));  // no hook any more
}

TEST_CASE("masks round-trip through checkpoints and load strictly", "[prune]") {
  test::TempDir dir;
  auto model = small_mlp();
  prune::Pruner pruner(*model);
  prune::magnitude(pruner, 0.6);
  optim::AdamW opt(model->parameters(), {.lr = 0.01});
  pruner.attach(opt);
  train_steps(*model, opt, 3);
  optim::save_checkpoint(dir.file("p.safetensors"), *model, &opt);

  // A model pruned the same way (any mask) loads it, and gets the saved masks.
  auto other = small_mlp(9);
  prune::Pruner other_pruner(*other);
  prune::magnitude(other_pruner, 0.1);
  optim::AdamW other_opt(other->parameters(), {.lr = 0.01});
  optim::load_checkpoint(dir.file("p.safetensors"), *other, &other_opt);
  for (size_t i = 0; i < pruner.size(); ++i) {
    CHECK(equal(other_pruner.mask(i), pruner.mask(i)));
    CHECK(equal(other_pruner.weight(i), pruner.weight(i)));
  }
  // An unpruned model has no buffers for the masks: strict loading names them.
  auto plain = small_mlp();
  CHECK_THROWS_WITH(optim::load_checkpoint(dir.file("p.safetensors"), *plain, nullptr),
                    Catch::Contains("unexpected keys") && Catch::Contains("0.weight_mask"));
  // And a pruned model cannot load a checkpoint without masks.
  optim::save_checkpoint(dir.file("plain.safetensors"), *plain, nullptr);
  CHECK_THROWS_WITH(optim::load_checkpoint(dir.file("plain.safetensors"), *other, nullptr),
                    Catch::Contains("missing keys") && Catch::Contains("2.weight_mask"));
}

TEST_CASE("the sparsity report lists every target and the total", "[prune]") {
  auto model = small_mlp();
  prune::Pruner pruner(*model);
  prune::magnitude(pruner, 0.75);
  const std::string r = pruner.sparsity_report();
  CHECK_THAT(r, Catch::Contains("0.weight") && Catch::Contains("2.weight") && Catch::Contains("total"));
  CHECK_THAT(r, Catch::Contains("(16,8)") && Catch::Contains("75.00%"));
}
