// Why masks must hold through the optimizer: the numbers quoted in docs/pruning.md.
//
// One Linear(4 -> 1) without bias fits a fixed target by mean squared error. It trains
// dense for 5 steps, so the optimizer builds up state (SGD's momentum buffer, Adam's
// moments), then the 2 smallest weights are pruned and training goes on for 8 steps.
// The first pruned weight is printed after every step, three ways:
//   zeroed once   the weight is set to 0 when pruning, and nothing else (what a naive
//                 `w *= mask` does; here Pruner::make_permanent right after pruning)
//   grad masked   a Pruner whose gradient hook zeroes dL/dw, but not attached to the
//                 optimizer (no re-masking after the step, state left alone)
//   weft          the Pruner attached: gradient masked, W *= M after every step, and the
//                 optimizer's state zeroed where pruned
// for SGD (lr 0.1, momentum 0.9, weight decay 0.01) and AdamW (lr 0.05, weight decay 0.1).
//
//   ninja -C build docs/pruning_revival && build/docs/pruning_revival
#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "weft.h"

using namespace weft;

namespace {

enum class Mode { ZeroedOnce, GradMasked, Weft };

using MakeOpt = std::function<std::unique_ptr<optim::Optimizer>(const std::vector<Tensor>&)>;

// The pruned weight's value after each of the 8 steps that follow pruning.
std::vector<float> trace(Mode mode, const MakeOpt& make_opt) {
  nn::Sequential model({std::make_shared<nn::Linear>(4, 1, false)});
  auto& lin = dynamic_cast<nn::Linear&>(*model[0]);
  lin.weight.detach().copy_(tensor({0.8f, -0.05f, 0.6f, 0.02f}, {1, 4}));
  auto opt = make_opt(model.parameters());
  const Tensor x = tensor({1.f, 2.f, 0.5f, -1.f, -0.5f, 1.f, 2.f, 1.f, 1.f, -1.f, 1.f, 0.5f}, {3, 4});
  const Tensor y = tensor({1.f, -0.5f, 0.8f}, {3, 1});
  auto step = [&] {
    opt->zero_grad();
    (model(x) - y).pow(2.0).mean().backward();
    opt->step();
  };
  for (int i = 0; i < 5; ++i) step();  // dense: the optimizer's state builds up
  prune::Pruner pruner(model);
  prune::magnitude(pruner, 0.5);  // the 2 smallest of 4
  if (mode == Mode::ZeroedOnce) pruner.make_permanent();
  if (mode == Mode::Weft) pruner.attach(*opt);
  // The first pruned position, from the mask.
  const auto mask = pruner.is_masked("0.weight") ? pruner.mask(0).to_vector<float>() : std::vector<float>{};
  size_t k = 0;
  const auto w0 = lin.weight.to_vector<float>();
  if (!mask.empty()) {
    while (mask[k] != 0) ++k;
  } else {
    while (w0[k] != 0) ++k;
  }
  std::vector<float> out;
  for (int i = 0; i < 8; ++i) {
    step();
    out.push_back(lin.weight.to_vector<float>()[k]);
  }
  return out;
}

void table(const char* title, const MakeOpt& make_opt) {
  const auto a = trace(Mode::ZeroedOnce, make_opt), b = trace(Mode::GradMasked, make_opt),
             c = trace(Mode::Weft, make_opt);
  std::printf("%s: the first pruned weight, k steps after pruning\n", title);
  std::printf("   k   zeroed once   grad masked      weft\n");
  for (size_t i = 0; i < a.size(); ++i) std::printf("  %2zu  %12.5f  %12.5f  %8.5f\n", i + 1, a[i], b[i], c[i]);
  std::printf("\n");
}

}  // namespace

int main() {
  set_num_threads(1);
  table("SGD lr 0.1 momentum 0.9 weight decay 0.01", [](const std::vector<Tensor>& p) {
    return std::make_unique<optim::SGD>(p, optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01});
  });
  table("AdamW lr 0.05 weight decay 0.1", [](const std::vector<Tensor>& p) {
    return std::make_unique<optim::AdamW>(p, optim::AdamOptions{.lr = 0.05, .weight_decay = 0.1});
  });
  return 0;
}
