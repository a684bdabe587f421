// Parameter groups (each with its own learning rate and weight decay) and
// ReduceLROnPlateau (issue 19). A grouped optimizer must update each group exactly as an
// optimizer over that group alone with the group's settings would, bit for bit.
#include <cmath>

#include "../helpers.h"
#include "../parallel/parallel_helpers.h"

using namespace weft;
using Catch::Matchers::Contains;

namespace {

// A tiny model's parameters with gradients from one fixed batch.
std::shared_ptr<nn::Sequential> model_with_grads(uint64_t seed) {
  manual_seed(seed);
  auto net = std::make_shared<nn::Sequential>();
  net->add<nn::Linear>(6, 5), net->add<nn::ReLU>(), net->add<nn::Linear>(5, 3);
  Generator g(seed + 1);
  Tensor x = randn({4, 6}, {}, g);
  nn::cross_entropy((*net)(x), tensor(std::vector<int64_t>{0, 1, 2, 1})).backward();
  return net;
}

std::vector<Tensor> params_of(const std::shared_ptr<nn::Sequential>& m, std::initializer_list<size_t> layers) {
  std::vector<Tensor> out;
  for (size_t l : layers)
    for (const Tensor& p : (*m)[l]->parameters()) out.push_back(p);
  return out;
}

// Three steps of `grouped` (over a) against one optimizer per group (over b), with the
// same gradients each step; the parameters must stay equal bit for bit.
template <class MakeGrouped, class MakeSplit>
void check_groups_equal_split(MakeGrouped make_grouped, MakeSplit make_split) {
  auto a = model_with_grads(3), b = model_with_grads(3);
  auto grouped = make_grouped(a);
  auto split = make_split(b);
  for (int step = 0; step < 3; ++step) {
    grouped->step();
    for (auto& o : split) o->step();
    if (step == 1) {  // a schedule moves every group's rate in proportion
      grouped->set_lr(grouped->lr() * 0.5);
      for (auto& o : split) o->set_lr(o->lr() * 0.5);
    }
  }
  REQUIRE(test::params_equal(*a, *b));
}

}  // namespace

TEST_CASE("a parameter group steps like an optimizer of its own with the group's lr and weight decay",
          "[optim][groups]") {
  using Groups = std::vector<optim::ParamGroup>;
  // SGD with momentum: the first layer at lr 0.1 (the optimizer's) and wd 0.01, the last
  // at lr 0.3 and wd 0.
  check_groups_equal_split(
      [](auto m) {
        return std::make_unique<optim::SGD>(Groups{{params_of(m, {0}), std::nullopt, std::nullopt},
                                                   {params_of(m, {2}), 0.3, 0.0}},
                                            optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01});
      },
      [](auto m) {
        std::vector<std::unique_ptr<optim::Optimizer>> v;
        v.push_back(std::make_unique<optim::SGD>(params_of(m, {0}),
                                                 optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01}));
        v.push_back(std::make_unique<optim::SGD>(params_of(m, {2}), optim::SGDOptions{.lr = 0.3, .momentum = 0.9}));
        return v;
      });
  // AdamW and Adam (coupled decay): decay only on the second group.
  for (bool decoupled : {true, false}) {
    INFO("decoupled " << decoupled);
    check_groups_equal_split(
        [decoupled](auto m) {
          return std::make_unique<optim::Adam>(Groups{{params_of(m, {0}), 1e-3, 0.0}, {params_of(m, {2}), 2e-3, 0.1}},
                                               optim::AdamOptions{.lr = 1e-3, .weight_decay = 0.5}, decoupled);
        },
        [decoupled](auto m) {
          std::vector<std::unique_ptr<optim::Optimizer>> v;
          v.push_back(std::make_unique<optim::Adam>(params_of(m, {0}), optim::AdamOptions{.lr = 1e-3, .weight_decay = 0},
                                                    decoupled));
          v.push_back(std::make_unique<optim::Adam>(params_of(m, {2}),
                                                    optim::AdamOptions{.lr = 2e-3, .weight_decay = 0.1}, decoupled));
          return v;
        });
  }
}

TEST_CASE("group rates follow set_lr as ratios; decay_groups; bad groups are refused", "[optim][groups]") {
  auto m = model_with_grads(5);
  optim::SGD opt({{params_of(m, {0}), std::nullopt, std::nullopt}, {params_of(m, {2}), 0.05, 0.2}}, {.lr = 0.1});
  CHECK(opt.num_groups() == 2);
  CHECK(opt.params().size() == 4);
  CHECK(opt.group_lr(0) == 0.1);
  CHECK(opt.group_lr(1) == 0.05);
  CHECK(opt.group_weight_decay(0, 0.7) == 0.7);  // unset: the optimizer's
  CHECK(opt.group_weight_decay(1, 0.7) == 0.2);
  opt.set_lr(0.02);
  CHECK(opt.group_lr(0) == Approx(0.02));
  CHECK(opt.group_lr(1) == Approx(0.01));

  // decay_groups: matrices decay, vectors (biases) do not; with a zero gradient AdamW
  // moves only the weights.
  const auto groups = optim::decay_groups(*m, 0.1);
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].params.size() == 2);  // the two weight matrices
  CHECK(groups[1].params.size() == 2);  // the two biases
  CHECK(groups[0].weight_decay == 0.1);
  CHECK(groups[1].weight_decay == 0.0);
  for (Tensor p : m->parameters()) p.set_grad(zeros_like(p));
  const Tensor w0 = (*m)[0]->parameters()[0].clone(), b0 = (*m)[0]->parameters()[1].clone();
  optim::AdamW adamw(groups, {.lr = 0.1});
  adamw.step();
  CHECK(!equal((*m)[0]->parameters()[0], w0));
  CHECK(equal((*m)[0]->parameters()[1], b0));

  // The state is indexed over all groups' parameters in order, and round-trips.
  optim::AdamW again(optim::decay_groups(*m, 0.1), {.lr = 0.1});
  again.load_state_dict(adamw.state_dict());
  CHECK(again.state_dict().size() == adamw.state_dict().size());

  const auto w = params_of(m, {0});
  REQUIRE_THROWS_WITH(optim::SGD({{w, std::nullopt, std::nullopt}, {{w[0]}, std::nullopt, std::nullopt}}, {.lr = 0.1}),
                      Contains("parameter 2 (group 1) is parameter 0 (group 0) again"));
  REQUIRE_THROWS_WITH(optim::SGD({{w, -1.0, std::nullopt}}, {.lr = 0.1}),
                      Contains("group 0's learning rate must be finite and >= 0, got -1"));
  REQUIRE_THROWS_WITH(optim::SGD({{w, std::nullopt, NAN}}, {.lr = 0.1}), Contains("group 0's weight_decay"));
  REQUIRE_THROWS_WITH(optim::SGD({{w, 0.1, std::nullopt}}, {.lr = 0.0}), Contains("the optimizer's lr is 0"));
}

TEST_CASE("ReduceLROnPlateau follows PyTorch's rules", "[optim][scheduler]") {
  Tensor p = zeros({1}, {.requires_grad = true});
  // min mode, absolute threshold 0, patience 2, cooldown 1, factor 0.5, min_lr 0.3: the
  // learning rates PyTorch 2's scheduler gives for the same metrics.
  optim::SGD opt({p}, {.lr = 1.0});
  using O = optim::PlateauOptions;
  optim::ReduceLROnPlateau plateau(
      opt, {.factor = 0.5, .patience = 2, .threshold = 0, .threshold_mode = O::Threshold::Abs, .cooldown = 1, .min_lr = 0.3});
  const std::vector<double> metrics = {10, 9, 9, 9, 9, 8, 8, 8, 8, 8, 8, 8, 8, NAN, 1};
  const std::vector<double> want = {1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3};
  std::vector<double> got;
  int reductions = 0;
  for (double m : metrics) {
    reductions += plateau.step(m);
    got.push_back(opt.lr());
  }
  CHECK(got == want);
  CHECK(reductions == 2);  // 1 -> 0.5 -> 0.3; at the floor nothing more changes
  CHECK(plateau.best() == 1);

  // max mode, relative threshold 10%, patience 0.
  optim::SGD opt2({p}, {.lr = 1.0});
  optim::ReduceLROnPlateau up(opt2, {.mode = O::Mode::Max, .factor = 0.1, .patience = 0, .threshold = 0.1});
  std::vector<double> lrs;
  for (double m : {1.0, 1.05, 1.2, 1.25, 1.4}) {
    up.step(m);
    lrs.push_back(opt2.lr());
  }
  REQUIRE(lrs.size() == 5);
  CHECK(lrs[0] == 1.0);
  CHECK(lrs[1] == Approx(0.1));
  CHECK(lrs[2] == Approx(0.1));
  CHECK(lrs[3] == Approx(0.01));
  CHECK(lrs[4] == Approx(0.01));

  REQUIRE_THROWS_WITH(optim::ReduceLROnPlateau(opt, {.factor = 1.0}), Contains("factor must be in [0, 1), got 1"));
  REQUIRE_THROWS_WITH(optim::ReduceLROnPlateau(opt, {.patience = -1}), Contains("patience and cooldown must be >= 0"));
}
