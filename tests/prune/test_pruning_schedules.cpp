// Pruning schedules and dynamic sparse training: gradual, lottery ticket, RigL, SET.
#include <cmath>
#include <numbers>

#include "../helpers.h"

using namespace weft;
namespace prune = weft::prune;

namespace {
std::shared_ptr<nn::Sequential> small_mlp(uint64_t seed = 3) {
  manual_seed(seed);
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(8, 32), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(32, 4)});
}

Tensor batch_x(int i) {
  Generator g(500 + i);
  return randn({16, 8}, {}, g);
}
Tensor batch_y(int i) {
  return tensor(std::vector<int64_t>{0, 1, 2, 3, 0, 1, 2, 3, 3, 2, 1, 0, i % 4, 1, 2, 0});
}
}  // namespace

TEST_CASE("gradual sparsity follows Zhu & Gupta's cubic", "[prune]") {
  const prune::GradualOptions o{.initial_sparsity = 0.1, .final_sparsity = 0.9, .begin_step = 100,
                                .num_prunings = 8, .interval = 50};
  auto formula = [&](double t) { return 0.9 + (0.1 - 0.9) * std::pow(1.0 - (t - 100) / (8 * 50), 3); };
  CHECK(prune::gradual_sparsity(o, 0) == 0.1);
  CHECK(prune::gradual_sparsity(o, 100) == Approx(0.1));
  for (int t : {150, 200, 275, 350, 499}) CHECK(prune::gradual_sparsity(o, t) == Approx(formula(t)));
  CHECK(prune::gradual_sparsity(o, 500) == Approx(0.9));
  CHECK(prune::gradual_sparsity(o, 10000) == Approx(0.9));

  // The schedule prunes on t0, t0 + dt, ..., t0 + n dt only, to the formula's value.
  auto model = small_mlp();
  prune::Pruner pruner(*model);
  prune::GradualPruning gradual(pruner, o);
  int prunings = 0;
  for (int t = 0; t <= 600; ++t) {
    if (!gradual.step(t)) continue;
    ++prunings;
    CHECK((t - 100) % 50 == 0);
    for (size_t i = 0; i < pruner.size(); ++i)
      CHECK(pruner.nonzeros(i) == pruner.weight(i).numel() - std::llround(formula(t) * pruner.weight(i).numel()));
  }
  CHECK(prunings == 9);
  CHECK(pruner.sparsity() == Approx(0.9).margin(0.01));
}

TEST_CASE("lottery ticket rounds rewind survivors to the saved weights", "[prune]") {
  for (int rewind_step : {0, 3}) {
    auto model = small_mlp();
    prune::Pruner pruner(*model);
    prune::LotteryTicket lottery(pruner, {.fraction_per_round = 0.2, .global = true});
    optim::SGD opt(model->parameters(), {.lr = 0.1, .momentum = 0.9});
    pruner.attach(opt);
    auto steps = [&](int from, int to) {
      for (int i = from; i < to; ++i) {
        opt.zero_grad();
        nn::cross_entropy((*model)(batch_x(i)), batch_y(i)).backward();
        opt.step();
        if (i + 1 == rewind_step) lottery.save_rewind_point();
      }
    };
    if (rewind_step == 0) lottery.save_rewind_point();
    steps(0, 10);
    std::vector<Tensor> saved;
    {
      // What the rewind point holds: rerun the same steps on a twin model.
      auto twin = small_mlp();
      optim::SGD twin_opt(twin->parameters(), {.lr = 0.1, .momentum = 0.9});
      for (int i = 0; i < rewind_step; ++i) {
        twin_opt.zero_grad();
        nn::cross_entropy((*twin)(batch_x(i)), batch_y(i)).backward();
        twin_opt.step();
      }
      saved = twin->parameters();
    }
    CHECK(lottery.prune_and_rewind() == Approx(0.2));
    CHECK(pruner.sparsity() == Approx(0.2).margin(0.002));
    const auto params = model->parameters();
    for (size_t p = 0; p < params.size(); ++p) {
      const auto now = params[p].to_vector<float>(), then = saved[p].to_vector<float>();
      const bool is_weight = p % 2 == 0;
      const auto mask = is_weight ? pruner.mask(p / 2).to_vector<float>() : std::vector<float>(now.size(), 1.0f);
      for (size_t k = 0; k < now.size(); ++k) REQUIRE(now[k] == (mask[k] != 0 ? then[k] : 0.0f));
    }
    steps(10, 20);
    CHECK(lottery.prune_and_rewind() == Approx(0.36));  // 1 - 0.8^2: 20% of what remained
    CHECK(pruner.sparsity() == Approx(0.36).margin(0.002));
  }
}

TEST_CASE("RigL keeps the sparsity fixed and grows where the dense gradient is largest", "[prune]") {
  auto model = small_mlp();
  prune::Pruner pruner(*model);
  Generator gen(4);
  prune::random(pruner, 0.8, gen);
  optim::AdamW opt(model->parameters(), {.lr = 0.01, .weight_decay = 0.01});
  pruner.attach(opt);
  prune::DynamicSparse rigl(pruner, {.alpha = 0.3, .interval = 5, .end_step = 40}, &opt);
  CHECK(rigl.drop_fraction(0) == Approx(0.3));
  CHECK(rigl.drop_fraction(20) == Approx(0.15));
  CHECK(rigl.drop_fraction(40) == 0.0);
  const std::vector<int64_t> active{pruner.nonzeros(0), pruner.nonzeros(1)};
  int updates = 0;
  for (int t = 0; t < 50; ++t) {
    rigl.before_backward(t);
    opt.zero_grad();
    nn::cross_entropy((*model)(batch_x(t)), batch_y(t)).backward();
    opt.step();
    const Tensor before = raw::clone(pruner.mask(0));
    const bool updated = rigl.is_update_step(t + 1);
    Tensor dense;
    if (updated) dense = raw::clone(pruner.dense_grad(0));
    if (!rigl.after_step(t + 1)) continue;
    ++updates;
    REQUIRE(pruner.nonzeros(0) == active[0]);
    REQUIRE(pruner.nonzeros(1) == active[1]);
    // Grown = active now, inactive before: their weights start at zero, and their dense
    // gradients are at least as large as those of every position left inactive.
    const auto b = before.to_vector<float>(), a = pruner.mask(0).to_vector<float>();
    const auto w = pruner.weight(0).to_vector<float>(), g = dense.to_vector<float>();
    float smallest_grown = 1e30f, largest_left = 0;
    int grown = 0;
    for (size_t k = 0; k < a.size(); ++k) {
      if (a[k] != 0 && b[k] == 0) {
        ++grown;
        REQUIRE(w[k] == 0.0f);
        smallest_grown = std::min(smallest_grown, std::abs(g[k]));
      } else if (a[k] == 0 && b[k] == 0) {
        largest_left = std::max(largest_left, std::abs(g[k]));
      }
    }
    CHECK(grown > 0);
    CHECK(largest_left <= smallest_grown);
  }
  CHECK(updates == 7);  // steps 5, 10, ..., 35
  CHECK(pruner.sparsity() == Approx(0.8).margin(0.01));
}

TEST_CASE("SET regrows at random and keeps the sparsity fixed", "[prune]") {
  auto model = small_mlp();
  prune::Pruner pruner(*model);
  prune::magnitude(pruner, 0.9);
  const Tensor start = raw::clone(pruner.mask(0));
  const int64_t active = pruner.nonzeros();
  prune::DynamicSparse set(pruner, {.grow = prune::DynamicSparseOptions::Grow::Random, .alpha = 0.5,
                                    .interval = 1, .end_step = 10, .seed = 7});
  set.update(0.5);
  CHECK(pruner.nonzeros() == active);
  CHECK_FALSE(equal(start, pruner.mask(0)));
}

TEST_CASE("SET resumed from its generator offset grows what an uninterrupted run grows", "[prune]") {
  // Two models pruned alike; A updates three times, B twice, then a fresh DynamicSparse
  // on B, given A's offset after two updates (what a checkpoint saves), updates once more.
  auto a = small_mlp(), b = small_mlp();
  nn::copy_state(*a, *b);
  prune::Pruner pa(*a), pb(*b);
  prune::magnitude(pa, 0.8);
  prune::magnitude(pb, 0.8);
  const prune::DynamicSparseOptions o{.grow = prune::DynamicSparseOptions::Grow::Random, .alpha = 0.5, .interval = 1,
                                      .end_step = 10, .seed = 11};
  prune::DynamicSparse set_a(pa, o), set_b(pb, o);
  set_a.update(0.5), set_a.update(0.4);
  set_b.update(0.5), set_b.update(0.4);
  const uint64_t saved = set_b.generator_offset();
  CHECK(saved == set_a.generator_offset());
  CHECK(saved > 0);  // it drew
  prune::DynamicSparse resumed(pb, o);
  resumed.set_generator_offset(saved);
  set_a.update(0.3);
  resumed.update(0.3);
  for (size_t i = 0; i < pa.size(); ++i) CHECK(equal(pa.mask(i), pb.mask(i)));
  // Without the offset the draws start over and grow elsewhere.
  prune::DynamicSparse restarted(pb, o);
  set_a.update(0.3);
  restarted.update(0.3);
  bool all_same = true;
  for (size_t i = 0; i < pa.size(); ++i) all_same = all_same && equal(pa.mask(i), pb.mask(i));
  CHECK_FALSE(all_same);
}
