#include "recipes.h"

namespace weft::samples {

Recipe recipe_for(const std::string& model) {
  if (model == "mlp") return mlp_recipe();
  if (model == "cnn") return cnn_recipe();
  if (model == "deep-mlp") return deep_mlp_recipe();
  throw Error(detail::str("--model: unknown model '", model, "' (use mlp, cnn or deep-mlp)"));
}

std::unique_ptr<optim::Optimizer> make_optimizer(const Recipe& r, const std::vector<Tensor>& params) {
  if (r.optimizer == "adamw") return std::make_unique<optim::AdamW>(params, optim::AdamOptions{.lr = r.lr, .weight_decay = r.weight_decay});
  if (r.optimizer == "adam") return std::make_unique<optim::Adam>(params, optim::AdamOptions{.lr = r.lr, .weight_decay = r.weight_decay});
  if (r.optimizer == "sgd")
    return std::make_unique<optim::SGD>(params, optim::SGDOptions{.lr = r.lr, .momentum = r.momentum, .weight_decay = r.weight_decay});
  throw Error(detail::str("--optimizer: unknown optimizer '", r.optimizer, "' (use adamw, adam or sgd)"));
}

optim::CosineWarmupLR make_schedule(const Recipe& r, optim::Optimizer& opt, int64_t steps_per_epoch) {
  const int64_t total = steps_per_epoch * r.epochs;
  return optim::CosineWarmupLR(opt, static_cast<int64_t>(r.warmup_fraction * total), total);
}

}  // namespace weft::samples
