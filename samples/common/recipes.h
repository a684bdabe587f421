// The samples' training recipes, in one place: for each model, how long to train, the
// batch size, the optimizer and its settings, and the learning-rate schedule. train_mlp
// and train_cnn use their model's recipe, train_ddp the recipe of --model, and
// train_pruned the MLP's recipe for both models (docs/pruning.md's numbers, the CNN's
// included, were measured with it). Every recipe field is also a command-line flag
// (trainer.h, add_flags), except warmup_fraction and momentum.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../../optim/optim.h"

namespace weft::samples {

struct Recipe {
  int epochs;
  int64_t batch_size;          // per step (train_ddp: per rank)
  double lr;                   // the peak learning rate, reached at the end of warmup
  std::string optimizer;       // adamw | adam | sgd
  double weight_decay;
  double label_smoothing;      // of the cross-entropy loss
  double warmup_fraction;      // of all steps, linear from ~0 to lr; then cosine decay to 0
  double momentum;             // sgd only
};

// train_mlp: AdamW with warmup and cosine decay, label smoothing 0.1. About 90.2% test
// accuracy after 10 epochs (README).
inline Recipe mlp_recipe() {
  return {.epochs = 10, .batch_size = 128, .lr = 2e-3, .optimizer = "adamw", .weight_decay = 0.05,
          .label_smoothing = 0.1, .warmup_fraction = 0.05, .momentum = 0.9};
}

// train_cnn: the MLP's recipe, for 5 epochs instead of 10 (about 92.2%, README).
inline Recipe cnn_recipe() {
  Recipe r = mlp_recipe();
  r.epochs = 5;
  return r;
}

// deep-mlp (train_pipeline): the MLP's recipe at half the learning rate (an 18-layer
// stack trains less steadily at 2e-3), for 5 epochs.
inline Recipe deep_mlp_recipe() {
  Recipe r = mlp_recipe();
  r.epochs = 5;
  r.lr = 1e-3;
  return r;
}

// The recipe of --model mlp, cnn or deep-mlp; throws on any other name.
Recipe recipe_for(const std::string& model);

// The optimizer the recipe names, with its settings.
std::unique_ptr<optim::Optimizer> make_optimizer(const Recipe& r, const std::vector<Tensor>& params);

// The recipe's learning-rate schedule over r.epochs epochs of `steps_per_epoch` steps:
// warmup over warmup_fraction of them, then cosine decay. It takes its peak from
// opt.lr() and at once sets opt's learning rate to the first step's, so build it once
// per optimizer, right after make_optimizer.
optim::CosineWarmupLR make_schedule(const Recipe& r, optim::Optimizer& opt, int64_t steps_per_epoch);

}  // namespace weft::samples
